# One image for every Python service of docker-compose.yml (migrate, web,
# bridge, worker, flower); each service sets its own command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=e_clean_backend.settings \
    PYTHONPATH=/app:/app/backend

WORKDIR /app

# A fixed, unprivileged uid/gid: files it must not change stay root's.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Requirements first, so a code change does not reinstall them.
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

# The code, owned by root and read-only for the app user; bytecode compiled
# now because the app user cannot write __pycache__ at run time.
COPY . .
RUN python -m compileall -q backend workers
# Static files (the admin's, the notifications page's) into backend/staticfiles,
# compressed, for WhiteNoise to serve from the web process. DEBUG only for a
# throwaway secret key at build time; nothing connects to Redis here.
RUN DJANGO_DEBUG=1 python backend/manage.py collectstatic --no-input -v 0

USER app:app

EXPOSE 8000
# The web process by default (compose sets each service's command; web runs
# from backend/, where the settings package is).
CMD ["sh", "-c", "cd backend && exec daphne -b 0.0.0.0 -p 8000 e_clean_backend.asgi:application"]
