import re

from django.views.debug import SafeExceptionReporterFilter

from .redis_config import mask_urls


class HideUrlsFilter(SafeExceptionReporterFilter):
    """Django's debug page, without the Redis password.

    Django hides settings by name only. Ours carry the password inside URLs
    (REDIS_URL, CELERY_BROKER_URL) and inside structures whose names say
    nothing (CHANNEL_LAYERS' ``hosts[].address``), so names ending in URL are
    hidden and every other value has the password of any URL in it masked.
    """

    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|URL", flags=re.IGNORECASE)

    def cleanse_setting(self, key, value):
        return mask_urls(super().cleanse_setting(key, value), self.cleansed_substitute)
