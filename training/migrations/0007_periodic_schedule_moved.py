# PeriodicSchedule now belongs to learning_engine (learning_engine/migrations/0001 takes it over with
# its table, training_periodicschedule, and rows): training lets go of it in Django's state only.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0006_dictionary_lineage"),
        ("learning_engine", "0001_periodic_schedule"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="PeriodicSchedule")],
            database_operations=[],
        ),
    ]
