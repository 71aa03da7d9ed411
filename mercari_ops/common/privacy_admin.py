"""One masking rule for personal data in every admin screen.

A ModelAdmin (or inline) declares `personal_fields`: model fields (raw LINE IDs, names, payment details,
JSON bodies that carry them) and the display methods that render them (`body_pretty`). Users without
`common.view_personal_data` (roles.can_see_pii) then get, on every page of that admin:

- a masked column / read-only field (`<name>_masked`, roles.mask) instead of the raw value, in the
  changelist, the change form and inlines; the raw field is never in the form;
- no search, list filter, ordering (`?o=`, default ordering, date hierarchy) or `_to_field` on it;
- no query-string lookup touching it: Django's changelist passes every unknown parameter to `filter()`
  once `lookup_allowed` says yes, so `?line_user_id__startswith=Uc` or `?body__to=U...` would answer a
  question about a value the page never shows. Refused lookups end in Django's own 400.

Lookups through relations are checked against the personal fields of every admin registered for the
model they reach (`?entry__amount=` on repayments is refused because payment entries declare `amount`):
one declaration per model, enforced wherever the model is reachable.

An inline whose rows are personal as a whole (their `__str__` included) sets `personal_rows = True`
and is left out for those users; an admin whose model's `__str__` shows personal data sets
`personal_str = True` and its change and history pages are titled "<model> #<pk>" for them.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import flatten_fieldsets, label_for_field
from django.contrib.admin.views.main import ORDER_VAR
from django.core.exceptions import FieldDoesNotExist
from django.db.models.constants import LOOKUP_SEP
from django.utils.translation import gettext as _

from .roles import can_see_pii, mask

MASK = "\u2022" * 6
MASKED_SUFFIX = "_masked"


def personal_fields_of(model, admin_site) -> set[str]:
    """Every name declared personal for `model` by any admin registered for it (proxies included)."""
    concrete = model._meta.concrete_model
    names: set[str] = set()
    for registered, model_admin in admin_site._registry.items():
        if registered._meta.concrete_model is concrete:
            names.update(getattr(model_admin, "personal_fields", ()))
    return names


def lookup_touches_personal(model, lookup: str, admin_site, own: Iterable[str] = ()) -> bool:
    """Whether a lookup path (`line_user_id__startswith`, `body__to`, `entry__amount`) reads a personal
    field of the model it starts from or of any model it reaches through relations."""
    lookup = lookup.lstrip("-^=@")
    own = set(own)
    for index, part in enumerate(lookup.split(LOOKUP_SEP)):
        personal = personal_fields_of(model, admin_site) | (own if index == 0 else set())
        if part in personal:
            return True
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if not getattr(field, "path_infos", None):  # not a relation: the rest are transforms or JSON keys
            return False
        model = field.path_infos[-1].to_opts.model
    return False


def _order_name(order_field) -> str | None:
    """The field name behind an ordering entry: "name", "-name", F("name"), F("name").desc()."""
    if isinstance(order_field, str):
        return order_field
    expression = getattr(order_field, "expression", order_field)
    return getattr(expression, "name", None)


class PersonalDataAdminMixin:
    """Put before `admin.ModelAdmin` / `admin.TabularInline`; declare `personal_fields`."""

    personal_fields: tuple[str, ...] = ()
    personal_rows: bool = False  # inlines: every row is personal (its title too): left out without the permission
    personal_str: bool = False  # the model's __str__ shows personal data: page titles name "<model> #<pk>" instead

    # -- the rule ---------------------------------------------------------------------------------------

    def personal_data_visible(self, request) -> bool:
        return request is not None and can_see_pii(request.user)

    def _touches(self, name) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.personal_fields:
            return True
        return lookup_touches_personal(self.model, name, self.admin_site, own=self.personal_fields)

    def _swap(self, names) -> list:
        """Raw personal names -> their masked display names (nested tuples of a fieldset line kept)."""
        swapped, seen = [], set()
        for name in names:
            if isinstance(name, (list, tuple)):
                swapped.append(tuple(self._swap(name)))
                continue
            if self._touches(name):
                name = f"{name}{MASKED_SUFFIX}"
            if name not in seen:
                seen.add(name)
                swapped.append(name)
        return swapped

    def __getattr__(self, name: str):
        # `<personal name>_masked` exists for every personal name, so the admin can render it anywhere a
        # field name is accepted (list_display, fields, fieldsets, readonly_fields).
        raw = name[: -len(MASKED_SUFFIX)] if name.endswith(MASKED_SUFFIX) else None
        if raw and self._touches(raw):
            return self._masked_display(raw)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _masked_display(self, raw: str):
        is_model_path = _model_path_exists(self.model, raw)

        def display(obj):
            value = _follow(obj, raw) if is_model_path else MASK
            if value in (None, ""):
                return ""
            return mask(value) if isinstance(value, str) else MASK

        try:
            display.short_description = label_for_field(raw, self.model, model_admin=self)
        except (AttributeError, FieldDoesNotExist):
            display.short_description = raw.replace("_", " ")
        return display

    # -- change form and inlines ------------------------------------------------------------------------

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if self.personal_data_visible(request) else self._swap(fields)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.personal_data_visible(request):
            return fieldsets
        return [(title, {**options, "fields": self._swap(options.get("fields", ()))})
                for title, options in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if self.personal_data_visible(request):
            return readonly
        declared = list(self.fields or ()) + list(flatten_fieldsets(self.fieldsets or ()))
        if not declared:  # Django's default form shows every model field the admin does not exclude
            excluded = set(super().get_exclude(request, obj) or ())
            declared = [name for name in self.personal_fields
                        if _model_path_exists(self.model, name) and name not in excluded]
        masked = [f"{name}{MASKED_SUFFIX}" for name in declared if self._touches(name)]
        swapped = self._swap(readonly)
        return [*swapped, *(name for name in masked if name not in swapped)]

    def get_exclude(self, request, obj=None):
        exclude = super().get_exclude(request, obj)
        if self.personal_data_visible(request):
            return exclude
        # The raw value never reaches the form (not even as an initial value); masked names are displays.
        personal = [name for name in self.personal_fields if _model_path_exists(self.model, name)]
        return [*(exclude or ()), *personal, *(f"{name}{MASKED_SUFFIX}" for name in self.personal_fields)]

    def _neutral_str(self, obj) -> str:
        return f"{self.model._meta.verbose_name} #{obj.pk}"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.personal_str and not self.personal_data_visible(request):
            context["subtitle"] = self._neutral_str(obj)
            context["original"] = _NeutralStr(obj, self._neutral_str(obj))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def history_view(self, request, object_id, extra_context=None):
        response = super().history_view(request, object_id, extra_context)
        context = getattr(response, "context_data", None) or {}
        obj = context.get("object")
        if obj is not None and self.personal_str and not self.personal_data_visible(request):
            context["title"] = _("Change history: %s") % self._neutral_str(obj)
            context["object"] = _NeutralStr(obj, self._neutral_str(obj))
        return response

    def has_view_permission(self, request, obj=None):
        if self.personal_rows and not self.personal_data_visible(request):
            return False
        return super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        if self.personal_rows and not self.personal_data_visible(request):
            return False
        return super().has_change_permission(request, obj)

    # -- changelist -------------------------------------------------------------------------------------

    def get_list_display(self, request):
        names = super().get_list_display(request)
        return names if self.personal_data_visible(request) else self._swap(names)

    def get_list_display_links(self, request, list_display):
        links = super().get_list_display_links(request, list_display)
        if self.personal_data_visible(request) or not links:
            return links
        return self._swap(links)

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if self.personal_data_visible(request):
            return fields
        return [name for name in fields if not self._touches(name)]

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if self.personal_data_visible(request):
            return filters
        return [item for item in filters
                if not self._touches(item[0] if isinstance(item, (list, tuple)) else item)]

    def get_ordering(self, request):
        ordering = super().get_ordering(request)
        if self.personal_data_visible(request):
            return ordering
        return [item for item in ordering or () if not self._touches(_order_name(item))]

    def get_sortable_by(self, request):
        sortable = super().get_sortable_by(request)
        if self.personal_data_visible(request):
            return sortable
        return [name for name in sortable if not self._touches(self._order_field_of(name))]

    def _order_field_of(self, name):
        if not isinstance(name, str) or _model_path_exists(self.model, name):
            return name
        attr = getattr(self, name, None) or getattr(self.model, name, None)
        return _order_name(getattr(attr, "admin_order_field", None))

    def get_changelist(self, request, **kwargs):
        changelist = super().get_changelist(request, **kwargs)
        if self.personal_data_visible(request):
            return changelist
        return _personal_data_changelist(changelist)

    def lookup_allowed(self, lookup, value, request=None):
        if not self.personal_data_visible(request) and self._touches(lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def to_field_allowed(self, request, to_field):
        if not self.personal_data_visible(request) and self._touches(to_field):
            return False
        return super().to_field_allowed(request, to_field)


def _personal_data_changelist(base):
    """The changelist for users who may not see personal data: no ordering by a personal field through
    `?o=` (Django orders by any list column's field, sortable or not) and no date hierarchy on one."""

    class PersonalDataChangeList(base):
        def __init__(self, request, model, list_display, list_display_links, list_filter, date_hierarchy,
                     *args, **kwargs):
            model_admin = kwargs["model_admin"] if "model_admin" in kwargs else args[5]
            if date_hierarchy and model_admin._touches(date_hierarchy):
                date_hierarchy = None
            super().__init__(request, model, list_display, list_display_links, list_filter, date_hierarchy,
                             *args, **kwargs)

        def get_ordering_field(self, field_name):
            order_field = super().get_ordering_field(field_name)
            if order_field is not None and self.model_admin._touches(_order_name(order_field)):
                return None
            return order_field

        def _get_default_ordering(self):
            # The admin's and the model's default ordering: without a personal field either.
            return [item for item in super()._get_default_ordering()
                    if not self.model_admin._touches(_order_name(item))]

        def get_ordering(self, request, queryset):
            # `?o=<index>` of a masked column is refused like any bad parameter (a redirect to `?e=1`).
            for part in self.params.get(ORDER_VAR, "").split("."):
                try:
                    name = self.list_display[int(part.rpartition("-")[2])]
                except (ValueError, IndexError):
                    continue
                if self._personal_column(name):
                    raise IncorrectLookupParameters(f"Ordering by {name} is not allowed")
            return super().get_ordering(request, queryset)

        def _personal_column(self, name) -> bool:
            if isinstance(name, str) and name.endswith(MASKED_SUFFIX):
                return self.model_admin._touches(name[: -len(MASKED_SUFFIX)])
            return self.model_admin._touches(_order_name(base.get_ordering_field(self, name)))

    return PersonalDataChangeList


class _NeutralStr:
    """The object for templates (pk, URLs) with a title that names no personal value."""

    def __init__(self, obj, text: str):
        self._obj, self._text = obj, text

    def __str__(self) -> str:
        return self._text

    def __getattr__(self, name: str):
        return getattr(self._obj, name)


def _model_path_exists(model, path: str) -> bool:
    """Whether `path` names a model field, possibly across relations (not an admin display method)."""
    for part in path.split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if getattr(field, "path_infos", None) and field.is_relation:
            model = field.path_infos[-1].to_opts.model
    return True


def _follow(obj, path: str):
    for part in path.split(LOOKUP_SEP):
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj
