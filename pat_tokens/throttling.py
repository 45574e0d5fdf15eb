"""Rate limits of the token views."""

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from .conf import pat_settings


class TokenViewRateThrottle(ScopedRateThrottle):
    """A scoped throttle whose rate falls back to ``PAT_TOKENS["THROTTLE_RATES"]``.

    The scope is ``pat_tokens.<view>``. A host's ``DEFAULT_THROTTLE_RATES`` entry for the scope
    wins. Otherwise the app's rate for the view applies, and ``None`` (or no rate at all) means no
    limit. DRF's own ``ScopedRateThrottle`` raises ``ImproperlyConfigured`` for a scope without
    a rate.
    """

    scope_prefix = "pat_tokens."

    def get_rate(self):
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope in rates:
            return rates[self.scope]
        view_name = self.scope.removeprefix(self.scope_prefix)
        return pat_settings.THROTTLE_RATES.get(view_name)

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super(ScopedRateThrottle, self).allow_request(request, view)


def throttles_for(view):
    """Return the throttle instances of a token view.

    The project's ``DEFAULT_THROTTLE_CLASSES`` stay in force, so a global anonymous rate also limits
    logins. DRF's ``ScopedRateThrottle`` is replaced by :class:`TokenViewRateThrottle`, which counts
    the same scope without failing when no rate is configured.
    """
    throttles = [TokenViewRateThrottle()]
    for throttle_class in api_settings.DEFAULT_THROTTLE_CLASSES:
        if issubclass(throttle_class, ScopedRateThrottle):
            continue
        throttles.append(throttle_class())
    return throttles
