from django.db import models
from django.utils import timezone


class Count(models.Model):
    """One series of a counter or a histogram bucket, summed over every process.

    Each process buffers its increments and adds them here (metrics.tally), so the
    reaper's, the keeper's and every web process's counts meet in the database, whichever
    process answers a scrape. ``updated_at`` is when the series last moved.
    """

    name = models.CharField(max_length=64)
    host = models.CharField(max_length=64, blank=True)
    label = models.CharField(max_length=64, blank=True)
    value = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "host", "label"], name="unique_metric_series")
        ]

    def __str__(self) -> str:
        return f"{self.name}{{host={self.host!r}, label={self.label!r}}} {self.value}"
