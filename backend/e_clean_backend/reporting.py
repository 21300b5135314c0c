import re

from django.views.debug import SafeExceptionReporterFilter


class HideUrlsFilter(SafeExceptionReporterFilter):
    """Also hides settings ending in URL: they may embed a password."""

    hidden_settings = re.compile("API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|URL", flags=re.IGNORECASE)
