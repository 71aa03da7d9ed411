# Issue 16: a bill that cannot settle is set aside (dead, with its reason); points columns that a bill of
# large amounts overflowed are bigint; the points service's circuit breaker.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0003_campaign_period_japan_time'),
    ]

    operations = [
        migrations.AlterField(
            model_name='bill',
            name='status',
            field=models.CharField(choices=[('pending', 'Waiting for settlement'), ('settled', 'Settled'), ('dead', 'Set aside: cannot settle')], default='pending', max_length=8),
        ),
        migrations.AddField(
            model_name='bill',
            name='dead_reason',
            field=models.TextField(blank=True, db_default='', default='', help_text='Why settlement set this bill aside (the database error).'),
        ),
        migrations.AddField(
            model_name='bill',
            name='dead_at',
            field=models.DateTimeField(blank=True, help_text='When settlement last set it aside.', null=True),
        ),
        migrations.AddField(
            model_name='bill',
            name='settle_failures',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='Settlement runs that failed on this bill.'),
        ),
        migrations.AlterField(
            model_name='campaignreward',
            name='points',
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AlterField(
            model_name='pointsgrant',
            name='points',
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AlterField(
            model_name='pointsledgerentry',
            name='points',
            field=models.BigIntegerField(),
        ),
        migrations.CreateModel(
            name='PointsServiceBreaker',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=32, unique=True)),
                ('consecutive_failures', models.PositiveIntegerField(default=0, help_text='Unavailable answers in a row.')),
                ('openings', models.PositiveIntegerField(default=0, help_text='Times opened since the service last answered.')),
                ('open_until', models.DateTimeField(blank=True, help_text='Delivery paused until then; empty = closed.', null=True)),
                ('opened_at', models.DateTimeField(blank=True, help_text='Start of the current outage.', null=True)),
                ('last_error', models.TextField(blank=True, default='')),
                ('last_success_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name': 'points service breaker',
            },
        ),
    ]
