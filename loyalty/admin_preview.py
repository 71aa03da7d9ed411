"""The stage-rules form's Preview: how many customers the posted definition would move, before anyone asks to
publish it.

`preview/` under the StageRuleVersion admin (POST, CSRF, the add permission of rules versions) takes the form's
`definition` as typed and renders `stage_rules_preview` (loyalty/services/rules_preview.py, read-only: nothing
is written, locked or queued) as a summary, a bar chart of customers per stage now and after, and the moves
between stages. The form's script (loyalty/static/loyalty/admin/rules_preview.js) asks for the fragment and
puts it into #rules-preview; without the script the Preview button posts the form here and gets a whole page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext, pgettext

from mercari_ops.common.charts import bar_chart
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict

from .services.rules_preview import stage_rules_preview

FRAGMENT_HEADER = "HTTP_X_RULES_PREVIEW"  # sent by rules_preview.js: answer the fragment alone


def _label(names: dict, stage: int) -> str:
    name = names.get(stage)
    return f"{name} ({stage})" if name else gettext("Stage %(stage)s") % {"stage": stage}


def preview_context(preview: dict) -> dict:
    """The preview as rows and a chart for the template."""
    names = preview["stage_names"]
    before, after = preview["per_stage_before"], preview["per_stage_after"]
    stages = sorted(set(before) | set(after) | set(names))
    labels = [_label(names, stage) for stage in stages]
    per_stage = [{"label": label, "before": before.get(stage, 0), "after": after.get(stage, 0),
                  "change": after.get(stage, 0) - before.get(stage, 0)} for stage, label in zip(stages, labels,
                                                                                                strict=True)]
    moves = [{"from": _label(names, move["from_stage"]), "to": _label(names, move["to_stage"]),
              "customers": move["customers"], "up": move["to_stage"] > move["from_stage"]}
             for move in preview["moves"]]
    chart = bar_chart(labels, [(gettext("Now"), [row["before"] for row in per_stage]),
                               (gettext("After publishing"), [row["after"] for row in per_stage])],
                      title=gettext("Customers per stage, now and with these rules"),
                      y_label=pgettext("chart axis", "customers"))
    return {"preview": preview, "per_stage": per_stage, "moves": moves, "chart": chart}


def rules_preview_view(model_admin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        return HttpResponse(gettext("You may not propose stage rules."), status=403, content_type="text/plain")
    if request.method != "POST":
        return HttpResponse(gettext("Post the rules form to preview it."), status=405, content_type="text/plain")
    context, status = {}, 200
    try:
        definition = json_loads_strict(request.POST.get("definition", ""), field="definition")
        context = preview_context(stage_rules_preview(definition=definition))
    except ValidationFailed as exc:
        context, status = {"error": exc.message}, 400
    if request.META.get(FRAGMENT_HEADER):
        return TemplateResponse(request, "admin/loyalty/stageruleversion/preview_fragment.html", context,
                                status=status)
    page = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
            "title": gettext("Preview of the stage rules"), **context}
    return TemplateResponse(request, "admin/loyalty/stageruleversion/preview.html", page, status=status)


def rules_preview_urls(model_admin) -> list:
    """For StageRuleVersionAdmin.get_urls, before the admin's own patterns."""
    def view(request):
        return rules_preview_view(model_admin, request)

    return [path("preview/", model_admin.admin_site.admin_view(view), name="loyalty_stageruleversion_preview")]
