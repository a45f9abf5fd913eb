"""templates/NOTES.txt: after install the user learns where the migration logs are and how to run
status and verify, for the strategy they chose."""

from __future__ import annotations

import json
import re

import pytest

from .render import VALUES_FILES, render_notes, strategy_values


def _notes(values: dict) -> str:
    return render_notes(json.dumps(values, sort_keys=True))


class TestNotes:
    @pytest.mark.parametrize(
        ("strategy", "logs"),
        [
            ("hook", "kubectl logs -n fast-note-prod job/fast-note-migrate -c migrate"),
            ("initContainer", "kubectl logs -n fast-note-prod deployment/fast-note -c migrate"),
            (
                "job",
                "kubectl logs -n fast-note-prod -l app.kubernetes.io/instance=fast-note,"
                "app.kubernetes.io/component=migration -c migrate",
            ),
        ],
    )
    def test_should_say_where_the_migration_logs_are(self, strategy, logs):
        notes = _notes(strategy_values(strategy))
        assert f"Migration strategy: {strategy}" in notes
        assert logs in notes

    @pytest.mark.parametrize("strategy", ["hook", "initContainer", "job", "none"])
    def test_should_say_how_to_run_verify_and_status(self, strategy):
        notes = _notes(strategy_values(strategy))
        assert "helm test fast-note -n fast-note-prod " in notes
        assert "--logs" not in notes  # fails on a passing test (helm/helm#9098)
        overrides = re.search(r"--overrides='(\{.*\})'", notes)
        assert overrides, notes
        pod = json.loads(overrides.group(1))
        status = pod["spec"]["containers"][0]
        assert status["args"] == ["status"]
        assert pod["spec"]["initContainers"][0]["name"] == "copy-migrations"

    def test_should_say_that_pods_wait_for_the_schema(self):
        assert "-c wait-for-migrations" in _notes(strategy_values("hook"))
        assert "-c wait-for-migrations" not in _notes(
            strategy_values("hook", wait={"enabled": False})
        )

    def test_should_say_the_contract_job_waits_for_the_rollout(self):
        notes = _notes(strategy_values("hook", contract={"enabled": True, "rolloutTimeout": "8m"}))
        assert "once deployment/fast-note has rolled out (up to 8m)" in notes
        assert "job/fast-note-migrate-contract -c migrate-contract" in notes

    def test_should_say_nothing_migrates_with_none(self):
        notes = _notes(strategy_values("none"))
        assert "Nothing touches the database" in notes

    def test_should_never_print_the_database_url(self):
        notes = _notes(strategy_values("initContainer"))
        assert "postgresql://" not in notes and "secret@" not in notes

    def test_should_name_the_existing_secret_in_prod(self):
        prod = str(next(f for f in VALUES_FILES if f.name == "prod.yaml"))
        notes = render_notes("{}", prod)
        assert '"name":"fast-note-secrets"' in notes
        assert "Argo CD" not in notes


class TestNotesTimeouts:
    def test_should_give_the_helm_and_flux_timeouts_that_outlast_the_job(self):
        notes = _notes(strategy_values("hook"))
        assert "Kubernetes stops a migration Job after 900 s" in notes
        assert "helm upgrade --install ... --timeout 16m" in notes
        assert "Flux HelmRelease: spec.timeout: 16m" in notes

    def test_should_follow_the_job_deadline(self):
        notes = _notes(strategy_values("hook", job={"activeDeadlineSeconds": 1230}))
        assert "--timeout 22m" in notes and "spec.timeout: 22m" in notes

    def test_should_name_the_contract_rollout_wait_in_prod(self):
        prod = str(next(f for f in VALUES_FILES if f.name == "prod.yaml"))
        notes = render_notes("{}", prod)
        assert "the contract Job also up to 10m for the rollout" in notes
        assert "--timeout 16m" in notes

    def test_should_bound_argocd_by_the_job_deadline(self):
        notes = _notes(strategy_values("job", argocd=True))
        assert "Argo CD has no hook timeout" in notes
        assert "at least 960 s" in notes
        assert "--timeout 16m" not in notes

    @pytest.mark.parametrize("strategy", ["initContainer", "none"])
    def test_should_not_talk_about_job_timeouts_without_a_job(self, strategy):
        assert "Timeouts:" not in _notes(strategy_values(strategy))


class TestNotesRollback:
    def test_should_say_rollbacks_below_a_contract_revision_are_unsafe(self):
        notes = _notes(strategy_values("hook", contract={"enabled": True}))
        assert "Rollback: revision 1 runs the contract phase after its rollout" in notes
        assert "the schema no longer fits the app of any earlier revision" in notes
        assert "never roll back past a revision whose contract phase applied something" in notes

    def test_should_warn_in_prod(self):
        prod = str(next(f for f in VALUES_FILES if f.name == "prod.yaml"))
        assert "Rollback: revision 1 runs the contract phase" in render_notes("{}", prod)

    @pytest.mark.parametrize("strategy", ["hook", "initContainer", "job", "none"])
    def test_should_not_warn_without_a_contract_phase(self, strategy):
        assert "Rollback:" not in _notes(strategy_values(strategy))


class TestNotesArgoCD:
    def test_should_say_where_the_argocd_verify_job_logs_are(self):
        notes = _notes(strategy_values("job", argocd=True))
        assert "a PostSync Job runs verify after every sync" in notes
        assert "app.kubernetes.io/component=test -c verify" in notes
        assert "PostSync Job" not in _notes(strategy_values("job"))
