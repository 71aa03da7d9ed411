# Issue 16: merchant master CSV files too big for a request are checked on upload and applied by a worker.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0004_dead_bills_big_points_breaker'),
    ]

    operations = [
        migrations.CreateModel(
            name='MerchantImportJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('file_name', models.CharField(blank=True, default='', max_length=255)),
                ('csv_text', models.TextField(blank=True, default='', help_text='The checked file; emptied once it is applied.')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=8)),
                ('rows_total', models.PositiveIntegerField(default=0)),
                ('rows_done', models.PositiveIntegerField(default=0)),
                ('result', models.JSONField(blank=True, default=dict, help_text='Masters and merchant IDs created and updated.')),
                ('problems', models.JSONField(blank=True, default=list, help_text="The file's first problems: line, column, message.")),
                ('error', models.TextField(blank=True, default='')),
                ('created_by', models.CharField(blank=True, default='', max_length=150)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('queued_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
    ]
