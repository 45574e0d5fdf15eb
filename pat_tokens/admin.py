"""Django admin for sessions: list, search and filter them, issue a pair, revoke sessions.

Operators never see a token after the response that issued it. The table contains digests only,
the admin shows a digest's first characters, and "Add" returns the plaintext in the body of the
response to its POST (never through a redirect, a message or a cookie). Issuing and revoking go
through :mod:`pat_tokens.services`, as in the API.

Permissions: *view* lists and opens sessions, *add* issues a pair, *delete* revokes sessions
(the "Revoke selected sessions" action and the Delete button). *change* grants nothing, since a
session cannot be edited by hand.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_ngettext
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import PersonalAccessToken
from .paginators import EstimatedCountPaginator

# 8 hex digits (32 bits) tell two sessions apart on screen and are useless for a lookup.
DIGEST_PREVIEW_LENGTH = 8
# The revoke confirmation page lists at most this many sessions, then shows how many more.
REVOKE_PREVIEW_LIMIT = 100

STATE_LABELS = {
    "active": _("active"),
    "access_expired": _("access expired"),
    "expired": _("expired"),
}


def digest_preview(digest):
    """Return the first characters of a digest followed by an ellipsis."""
    return f"{digest[:DIGEST_PREVIEW_LENGTH]}…"


class StateFilter(admin.SimpleListFilter):
    """Filter by session state, compared in SQL against the current time.

    A token is expired from its expiry instant on, as in authentication. "active" means that the
    access token still works, and "access expired" that only the refresh token does.
    """

    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return list(STATE_LABELS.items())

    def queryset(self, request, queryset):
        now = timezone.now()
        conditions = {
            "active": Q(expires_access_token__gt=now, expires_refresh_token__gt=now),
            "access_expired": Q(expires_access_token__lte=now, expires_refresh_token__gt=now),
            "expired": Q(expires_refresh_token__lte=now),
        }
        condition = conditions.get(self.value())
        if condition is None:
            return queryset
        return queryset.filter(condition)


class IssuePairForm(forms.ModelForm):
    """The "Add" form: the user to issue a pair for."""

    class Meta:
        model = PersonalAccessToken
        fields = ("user",)

    def clean_user(self):
        user = self.cleaned_data["user"]
        if not getattr(user, "is_active", True):
            raise ValidationError(
                _("This user is inactive, and an inactive user cannot be issued tokens."),
                code="user_inactive",
            )
        return user


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "state",
        "expires_access_token",
        "expires_refresh_token",
        "created_at",
        "updated_at",
    )
    list_display_links = ("id",)
    list_filter = (StateFilter,)
    # Not joined: the users of a page are prefetched (see get_queryset).
    list_select_related = ()
    ordering = ("-id",)
    raw_id_fields = ("user",)
    search_help_text = _(
        "Finds the sessions of users whose username or e-mail address starts with the text."
    )

    # A million-row table on MySQL must not be counted on every page view: no "N total" count
    # and no facet counts, and a paginator that counts a bounded number of rows.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    actions = ("revoke_selected",)

    add_form = IssuePairForm
    add_form_template = "admin/pat_tokens/personalaccesstoken/add_form.html"
    issued_template = "admin/pat_tokens/personalaccesstoken/issued.html"
    revoke_confirmation_template = (
        "admin/pat_tokens/personalaccesstoken/revoke_selected_confirmation.html"
    )

    add_fieldsets = (
        (
            None,
            {
                "fields": ("user",),
                "description": _(
                    "Issues an access token and a refresh token for the user. They are shown "
                    "once, on the next page, and cannot be shown again."
                ),
            },
        ),
    )
    fieldsets = (
        (None, {"fields": ("id", "user", "state")}),
        (_("Access token"), {"fields": ("access_token_digest", "expires_access_token")}),
        (_("Refresh token"), {"fields": ("refresh_token_digest", "expires_refresh_token")}),
        (_("History"), {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "id",
        "state",
        "access_token_digest",
        "refresh_token_digest",
        "created_at",
        "updated_at",
    )

    # Display

    @admin.display(description=_("state"))
    def state(self, obj):
        return STATE_LABELS[obj.state]

    @admin.display(description=_("access token digest"))
    def access_token_digest(self, obj):
        return digest_preview(obj.access_token)

    @admin.display(description=_("refresh token digest"))
    def refresh_token_digest(self, obj):
        return digest_preview(obj.refresh_token)

    def get_queryset(self, request):
        """Return the sessions with their users prefetched: one more query, whatever the rows.

        A join would make MariaDB 10.11 read ``users`` first and sort every session to find the
        newest page: 20 s for the first list page of a million sessions, against milliseconds
        for the page by primary key plus one query for its users (measured on this project's
        development machine, 2 cores).
        """
        return super().get_queryset(request).prefetch_related("user")

    def get_search_fields(self, request):
        """Search the user's ``USERNAME_FIELD`` and e-mail field, by prefix.

        The user model is read per request, not at import, so a swapped ``AUTH_USER_MODEL`` works.
        A prefix match (``LIKE 'text%'``) can use the indexes of those columns on MySQL.
        """
        user_model = get_user_model()
        names = []
        for name in (user_model.USERNAME_FIELD, user_model.get_email_field_name()):
            try:
                user_model._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            if name not in names:
                names.append(name)
        return [f"^user__{name}" for name in names]

    # Permissions

    def has_change_permission(self, request, obj=None):
        # Sessions change only through the service layer (refresh), so every page is read-only.
        return False

    def get_actions(self, request, action_location=None):
        # Django 6.1 passes where the actions are shown; Django 5.2 has no such parameter.
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)
        # "Revoke selected sessions" replaces it, with the same (delete) permission.
        actions.pop("delete_selected", None)
        return actions

    def changelist_view(self, request, extra_context=None):
        # Django ignores a POSTed action that the user may not run and shows the list again.
        # A revoke without the delete permission gets 403 instead.
        if (
            request.method == "POST"
            and "revoke_selected" in request.POST.getlist("action")
            and not self.has_delete_permission(request)
        ):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    # Add: issue a pair

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def add_view(self, request, form_url="", extra_context=None):
        """Show the "Add" form, and on a valid POST issue a pair and show its tokens once.

        The tokens are rendered into the response to the POST itself. Django's usual redirect
        after "Save" would need them to survive to the next request, in the URL or in the
        messages framework, whose default storage is a cookie. An invalid POST falls through to
        Django's view, which shows the errors.
        """
        if request.method == "POST":
            if not self.has_add_permission(request):
                raise PermissionDenied
            form = self.get_form(request)(request.POST)
            if form.is_valid():
                return self._issue_pair(request, form.cleaned_data["user"])

        extra_context = {
            "title": _("Issue tokens"),
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, extra_context)

    def _issue_pair(self, request, user):
        pair = services.issue_pair(user, request=request)
        self.log_addition(request, pair.token, [{"added": {}}])

        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": _("Tokens issued"),
            "subtitle": str(pair.token),
            "opts": self.opts,
            "session": pair.token,
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "change_url": self._admin_url("change", pair.token.pk),
            "changelist_url": self._admin_url("changelist"),
            "add_url": self._admin_url("add"),
        }
        response = TemplateResponse(request, self.issued_template, context)
        # The admin site's view wrapper sets these headers too. Setting them here keeps them on
        # the one page with token plaintext even if the view is wrapped differently.
        add_never_cache_headers(response)
        return response

    def _admin_url(self, view, *args):
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(name, args=args, current_app=self.admin_site.name)

    # Revoke

    def delete_model(self, request, obj):
        services.revoke_sessions(self.model._default_manager.filter(pk=obj.pk), request=request)

    def delete_queryset(self, request, queryset):
        services.revoke_sessions(queryset, request=request)

    @admin.action(permissions=["delete"], description=_("Revoke selected sessions"))
    def revoke_selected(self, request, queryset):
        """Revoke the selected sessions after a confirmation page, as Django's delete action does.

        The confirmation page posts back the same selection (the ticked ids and "select all"),
        so the sessions are read again when the operator confirms.
        """
        if request.POST.get("post") != "yes":
            return self._render_revoke_confirmation(request, queryset)

        sessions = list(queryset)
        if sessions:
            self.log_deletions(request, sessions)
        revoked = services.revoke_sessions(queryset, request=request)
        self.message_user(
            request,
            ngettext("Revoked %(count)d session.", "Revoked %(count)d sessions.", revoked)
            % {"count": revoked},
            messages.SUCCESS,
        )
        return None

    def _render_revoke_confirmation(self, request, queryset):
        count = queryset.count()
        preview = list(queryset[:REVOKE_PREVIEW_LIMIT])

        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revoke sessions"),
            "subtitle": None,
            "opts": self.opts,
            "objects_name": model_ngettext(self.opts, count),
            "count": count,
            "sessions": preview,
            "more_count": count - len(preview),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, self.revoke_confirmation_template, context)
