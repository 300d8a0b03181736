from django.db import models
from django.db.models import Q

from apps.orgs.tenancy import OrgOwnedModel
from spendctl.common.models import TimestampedModel

RATE = {"max_digits": 18, "decimal_places": 8, "null": True, "blank": True}


class PriceOverride(OrgOwnedModel, TimestampedModel):
    """A negotiated price: a discount on a provider (or one model), or explicit per-million-token prices for a model.

    In force from `effective_from` (inclusive) to `effective_to` (exclusive, open when empty), in UTC dates.
    """

    provider = models.CharField(max_length=64)
    model = models.CharField(
        max_length=128, blank=True, default="", help_text="Empty: every model of the provider"
    )
    discount_percent = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True)
    input_mtok = models.DecimalField(**RATE)
    cache_read_mtok = models.DecimalField(**RATE)
    cache_write_mtok = models.DecimalField(**RATE)
    output_mtok = models.DecimalField(**RATE)
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["provider", "model", "effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(discount_percent__isnull=True)
                | (Q(discount_percent__gt=0) & Q(discount_percent__lte=100)),
                name="override_discount_range",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=models.F("effective_from")),
                name="override_dates_ordered",
            ),
        ]

    @property
    def has_rates(self) -> bool:
        return any(
            v is not None
            for v in (self.input_mtok, self.cache_read_mtok, self.cache_write_mtok, self.output_mtok)
        )
