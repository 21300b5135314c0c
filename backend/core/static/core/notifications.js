// The notifications page, live: one WebSocket to /ws/notifications/.
// On every (re)connect it sends the last id it shows and gets what it missed
// (the database is the source of truth), then live ones; ids it already shows
// are dropped, so each notification appears once. Protocol: core/consumers.py.
(function () {
  "use strict";

  var list = document.getElementById("list");
  var empty = document.getElementById("empty");
  var unreadBadge = document.getElementById("unread");
  var statusEl = document.getElementById("status");
  var shown = new Map(); // id -> <li>
  var lastId = 0;
  var socket = null;
  var attempt = 0;
  var RETRY_MIN = 500, RETRY_MAX = 15000; // ms, doubled per failed attempt, with jitter

  function setStatus(state, text) {
    statusEl.className = "status " + state;
    statusEl.textContent = text;
    document.body.dataset.socket = state;
  }

  function setUnread(n) {
    unreadBadge.textContent = String(n);
    unreadBadge.classList.toggle("zero", n === 0);
  }

  function render(n, fresh) {
    var li = document.createElement("li");
    li.className = "item" + (n.read ? "" : " unread") + (fresh ? " fresh" : "");
    li.dataset.id = String(n.id);
    var title = document.createElement("div");
    title.className = "title";
    title.textContent = n.title; // text, never HTML: messages come from other users
    var message = document.createElement("div");
    message.className = "message";
    message.textContent = n.message;
    var meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = n.kind + " · " + new Date(n.created_at).toLocaleString();
    li.append(title, message, meta);
    li.addEventListener("click", function () {
      if (li.classList.contains("unread")) send({ type: "read", ids: [n.id] });
    });
    return li;
  }

  // Newest first: keep the list ordered by id, descending.
  function insert(n, fresh) {
    if (shown.has(n.id)) return false;
    var li = render(n, fresh);
    var before = null;
    for (var child = list.firstElementChild; child; child = child.nextElementSibling) {
      if (Number(child.dataset.id) < n.id) { before = child; break; }
    }
    list.insertBefore(li, before);
    shown.set(n.id, li);
    if (n.id > lastId) lastId = n.id;
    empty.hidden = true;
    return true;
  }

  function markRead(ids, all) {
    shown.forEach(function (li, id) {
      if (all || ids.indexOf(id) !== -1) li.classList.remove("unread");
    });
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function onMessage(event) {
    var msg;
    try { msg = JSON.parse(event.data); } catch (e) { return; }
    if (msg.type === "backlog") {
      msg.notifications.forEach(function (n) { insert(n, true); });
      setUnread(msg.unread);
    } else if (msg.type === "notification") {
      if (insert(msg.notification, true)) setUnread(countUnreadOr(msg.notification));
    } else if (msg.type === "read") {
      markRead(msg.ids || [], msg.all === true);
      setUnread(msg.unread);
    }
  }

  // The server's count is exact at backlog/read time; a live unread one adds one.
  function countUnreadOr(n) {
    return Number(unreadBadge.textContent) + (n.read ? 0 : 1);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/notifications/");
    socket.onopen = function () {
      attempt = 0;
      setStatus("live", "live");
      send({ type: "resume", last_id: lastId });
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4401) { // not logged in (or logged out): a reload goes to the login page
        setStatus("reconnecting", "signed out: reload to sign in");
        return;
      }
      var delay = Math.min(RETRY_MAX, RETRY_MIN * Math.pow(2, attempt));
      delay = delay / 2 + Math.random() * delay / 2;
      attempt += 1;
      setStatus("reconnecting", "reconnecting…");
      setTimeout(connect, delay);
    };
  }

  document.getElementById("mark-all").addEventListener("click", function () {
    send({ type: "read", all: true });
  });

  JSON.parse(document.getElementById("initial-notifications").textContent)
    .forEach(function (n) { insert(n, false); });
  setUnread(Number(unreadBadge.textContent));
  connect();
})();
