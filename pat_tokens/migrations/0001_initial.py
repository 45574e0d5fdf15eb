import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import pat_tokens.expressions


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PersonalAccessToken",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                (
                    "access_token",
                    models.CharField(
                        editable=False,
                        max_length=400,
                        unique=True,
                        verbose_name="access token digest",
                    ),
                ),
                (
                    "refresh_token",
                    models.CharField(
                        editable=False,
                        max_length=255,
                        unique=True,
                        verbose_name="refresh token digest",
                    ),
                ),
                (
                    "expires_access_token",
                    models.DateTimeField(verbose_name="access token expires at"),
                ),
                (
                    "expires_refresh_token",
                    models.DateTimeField(db_index=True, verbose_name="refresh token expires at"),
                ),
                (
                    "created_at",
                    models.DateTimeField(
                        db_default=pat_tokens.expressions.CurrentTimestamp(),
                        default=django.utils.timezone.now,
                        editable=False,
                        verbose_name="created at",
                    ),
                ),
                (
                    "updated_at",
                    models.DateTimeField(
                        auto_now=True,
                        db_default=pat_tokens.expressions.CurrentTimestamp(),
                        verbose_name="updated at",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="personal_access_tokens",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
            ],
            options={
                "verbose_name": "session",
                "verbose_name_plural": "sessions",
                "db_table": "refresh_tokens",
            },
        ),
    ]
