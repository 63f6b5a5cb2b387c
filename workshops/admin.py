"""The operators' view of workshops, seats and instructors' tokens (Django admin)."""

from django.contrib import admin

from workshops.models import ApiToken, Seat, Workshop


class SeatInline(admin.TabularInline):
    model = Seat
    extra = 0
    fields = ("number", "status", "trainee_name", "attempts", "error", "ready_at", "taken_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Workshop)
class WorkshopAdmin(admin.ModelAdmin):
    list_display = ("title", "join_code", "seats", "starts_at", "ends_at", "ended_at")
    list_filter = ("ended_at",)
    search_fields = ("title", "join_code")
    filter_horizontal = ("instructors",)
    readonly_fields = ("join_code", "created_at", "created_by")
    inlines = [SeatInline]


@admin.register(Seat)
class SeatAdmin(admin.ModelAdmin):
    list_display = ("workshop", "number", "status", "trainee_name", "attempts")
    list_filter = ("status",)
    search_fields = ("workshop__title", "trainee_name")
    readonly_fields = ("session", "trainee_key", "claimed_at", "ready_at", "taken_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be seen (by prefix) and revoked (deleted), never read back."""

    list_display = ("user", "prefix", "created_at", "last_used_at")
    readonly_fields = ("user", "prefix", "key_hash", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False
