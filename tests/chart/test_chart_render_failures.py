"""templates/_validate.tpl: impossible combinations fail at render, saying what to set."""

from __future__ import annotations

import pytest

from .render import DB_URL, RenderError, render_chart

CASES = [
    (
        {"database": {"url": DB_URL, "existingSecret": "fast-note-secrets"}},
        "database.url and database.existingSecret are both set",
    ),
    (
        {"migration": {"strategy": "hook"}},
        "migration.strategy=hook needs the database: set database.existingSecret",
    ),
    (
        {"migration": {"strategy": "initContainer"}},
        "migration.strategy=initContainer needs the database",
    ),
    (
        {"database": {"url": DB_URL}, "migration": {"strategy": "initContainer", "argocd": True}},
        "migration.argocd=true needs a migration Job: set migration.strategy to job",
    ),
    (
        {
            "database": {"url": DB_URL},
            "migration": {"strategy": "job", "contract": {"enabled": True}},
        },
        "migration.contract.enabled=true runs as a post-upgrade hook: set migration.strategy=hook",
    ),
    (
        {
            "database": {"url": DB_URL},
            "migration": {
                "contract": {"enabled": True, "rolloutTimeout": "15m"},
                "job": {"activeDeadlineSeconds": 900},
            },
        },
        "migration.contract.rolloutTimeout (15m) must be below migration.job.activeDeadlineSeconds",
    ),
    (
        {
            "database": {"url": DB_URL},
            "migration": {"database": {"url": DB_URL, "existingSecret": "ddl"}},
        },
        "migration.database.url and migration.database.existingSecret/existingSecretKey are both",
    ),
    (
        {"database": {"url": DB_URL}, "migration": {"database": {"existingSecretKey": "direct"}}},
        "migration.database.existingSecretKey names a key of an existing Secret",
    ),
    (
        {"migration": {"strategy": "none", "database": {"existingSecret": "ddl"}}},
        "migration.database is set but the app has no database",
    ),
    (
        {
            "database": {"url": DB_URL},
            "migration": {
                "connectTimeout": "5m",
                "lockTimeout": "10m",
                "job": {"activeDeadlineSeconds": 900},
            },
        },
        "migration.connectTimeout (5m) + migration.lockTimeout (10m) = 900 s must be below "
        "migration.job.activeDeadlineSeconds (900 s)",
    ),
    (
        {
            "database": {"url": DB_URL},
            "migration": {
                "strategy": "job",
                "lockTimeout": "30s",
                "job": {"activeDeadlineSeconds": 150},
            },
        },
        "migration.connectTimeout (2m) + migration.lockTimeout (30s) = 150 s must be below",
    ),
    (
        {"database": {"url": DB_URL}, "networkPolicy": {"enabled": True}},
        "networkPolicy.enabled=true needs networkPolicy.database.cidrs",
    ),
    (
        {"database": {"url": DB_URL}, "config": {"existingConfigMap": "c", "data": {"A": "1"}}},
        "config.existingConfigMap and config.data are both set",
    ),
    (
        {
            "database": {"url": DB_URL},
            "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2},
        },
        "autoscaling.minReplicas is greater than autoscaling.maxReplicas",
    ),
    (
        {
            "database": {"url": DB_URL},
            "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1},
        },
        "podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set",
    ),
    (
        {"database": {"url": DB_URL}, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}},
        "podDisruptionBudget.minAvailable=2 with 2 app replicas lets no pod be evicted",
    ),
    (
        {
            "database": {"url": DB_URL},
            "autoscaling": {"enabled": True, "minReplicas": 3},
            "podDisruptionBudget": {"enabled": True, "minAvailable": "100%"},
        },
        "podDisruptionBudget.minAvailable=100% with 3 app replicas lets no pod be evicted",
    ),
    (
        {
            "database": {"url": DB_URL},
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 0},
        },
        "podDisruptionBudget.maxUnavailable=0 lets no pod be evicted",
    ),
    (
        {
            "database": {"url": DB_URL},
            "serviceAccount": {"create": False, "annotations": {"a": "b"}},
        },
        "serviceAccount.annotations only apply to a ServiceAccount the chart creates",
    ),
]


class TestRenderFailures:
    @pytest.mark.parametrize(
        ("values", "message"), CASES, ids=[m.split(":")[0][:40] for _, m in CASES]
    )
    def test_should_fail_with_what_to_set(self, helm, values, message):
        with pytest.raises(RenderError) as err:
            render_chart(values, helm=helm)
        assert f"fast-note: {message}" in str(err.value)

    def test_should_fail_with_the_default_values(self, helm):
        """The chart refuses to guess where the database is."""
        with pytest.raises(RenderError, match=r"database\.existingSecret"):
            render_chart({}, helm=helm)

    @pytest.mark.parametrize(
        "values",
        [
            {"migration": {"strategy": "none"}},
            {"database": {"url": DB_URL}, "migration": {"strategy": "job", "argocd": False}},
            {
                "database": {"existingSecret": "s"},
                "migration": {"strategy": "hook", "argocd": True},
            },
            {
                "database": {"url": DB_URL},
                "migration": {"lockTimeout": "12m", "job": {"activeDeadlineSeconds": 900}},
            },
            {
                "database": {"url": DB_URL},
                "migration": {"strategy": "initContainer", "lockTimeout": "1h"},
            },
        ],
    )
    def test_should_accept_valid_combinations(self, helm, values):
        assert render_chart(values, helm=helm)
