"""One model, to show what the ORM does from green code."""

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "django_site"
