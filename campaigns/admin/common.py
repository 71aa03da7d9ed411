import csv

from django.http import StreamingHttpResponse


class _Echo:
    def write(self, value):
        return value


def csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    """Stream a CSV download (rows is an iterable of lists), never holding the file in memory."""
    writer = csv.writer(_Echo())

    def generate():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(generate(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ReadOnlyAdmin:
    """Mixin: rows written only by services (settlement, inbox), never by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class OperatorActionsMixin:
    """Admin actions that do settlement work (`permissions=["operate"]`): for operators, who hold the
    model's change permission; marketers only view these rows. The rows stay read-only for everyone."""

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")
