from django.db import migrations

ROLLUP_TABLES = ("usage_dailyrollup", "usage_dailymodelrollup")


def fill_to_70(apps, schema_editor):
    """Every ingest adds to rollup rows of the same days again and again. With pages filled only to 70 %, the new
    version of a row fits in its page: a HOT update, with no new index entries and old versions pruned in place.
    (Pages written before this keep their fill until rewritten; new pages honour it.)"""
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in ROLLUP_TABLES:
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def fill_to_100(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in ROLLUP_TABLES:
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0004_ledger_lean_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="dailyrollup",
            name="usage_rollup_org_day_model",
        ),
        migrations.RunPython(fill_to_70, fill_to_100),
    ]
