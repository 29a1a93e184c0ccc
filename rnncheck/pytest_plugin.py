"""The pytest plugin: a fixture, a marker, model-file collection and the regression gate.

Registered through the ``pytest11`` entry point, so installing rnncheck is enough.  It is
thin: options go into a :class:`RnncheckSession`, the work into :func:`rnncheck.verify`
and :class:`rnncheck.gate.Gate`.  Nothing heavy (torch) is imported until a test uses it.

- ``rnncheck`` fixture: ``rnncheck.verify(case)`` returns the result;
  ``rnncheck.assert_ok(case)`` fails the test with the same table the command prints.
- ``@pytest.mark.rnncheck(budget=5, dtype="float64", probes=3, seed=0, full=False)``:
  options for the tests it marks.
- ``pytest --rnncheck PATH``: every ``@rnncheck.case`` in the model files under PATH
  becomes a test item ``file::case``; ``-k``, ``-x``, ``--junitxml`` and pytest-xdist's
  ``-n`` work on them as on any test.
- ``--rnncheck-baseline FILE`` (with ``--rnncheck-update-baseline`` to write it): the
  gradient-regression gate on those items.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path

import pytest

from .collect import SKIPPED_NAMES, load_file, looks_like_model_file
from .errors import RnncheckFailure, failure_line
from .findings import Verdict
from .options import SPECS, Options, find_config, resolve
from .render.terminal import make_console, render_case


def _marker_keywords() -> tuple[str, ...]:

    return tuple(spec.field for spec in SPECS)


def pytest_addoption(parser) -> None:
    """The plugin's own switches, then every declared option as ``--rnncheck-<name>`` and ini key ``rnncheck_<name>``."""

    group = parser.getgroup("rnncheck", "rnncheck gradient checks")
    group.addoption(
        "--rnncheck",
        action="store_true",
        default=False,
        help="collect @rnncheck.case functions from the model files under the given paths",
    )
    group.addoption(
        "--rnncheck-baseline",
        metavar="FILE",
        default=None,
        help="compare every collected case with this baseline (the gate)",
    )
    group.addoption(
        "--rnncheck-update-baseline",
        action="store_true",
        default=False,
        help="write the --rnncheck-baseline file instead",
    )
    for spec in SPECS:
        name = "--rnncheck-" + spec.key
        dest = "rnncheck_opt_" + spec.field
        if spec.kind == "flag":
            group.addoption(name, action="store_true", default=None, dest=dest, help=spec.help)
        else:
            group.addoption(name, default=None, dest=dest, metavar=spec.metavar or spec.kind.upper(), help=spec.help)
        parser.addini("rnncheck_" + spec.key.replace("-", "_"), f"{spec.help} (as {name})", default=None)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "rnncheck(**options): rnncheck options for this test, e.g. budget=5, timeout=60, probes=5, dtype='float64'",
    )
    config.stash[SESSION_KEY] = RnncheckSession(config)


class RnncheckSession:
    """The plugin's state: base options and, when asked for, the gate."""

    def __init__(self, config) -> None:
        self.config = config
        self._gate = None
        self._base: dict | None = None

    def base_values(self) -> dict:
        """Command line, then RNNCHECK_*, then ini keys, then [tool.rnncheck]: the first that says wins."""
        if self._base is None:
            given, ini = {}, {}
            for spec in SPECS:
                raw = self.config.getoption("rnncheck_opt_" + spec.field, None)
                if raw is not None:
                    given[spec.field] = spec.parse(raw, "--rnncheck-" + spec.key)
                value = self.config.getini("rnncheck_" + spec.key.replace("-", "_"))
                if value not in (None, "", []):
                    ini[spec.key] = value
            try:
                config, config_file = find_config(self.config.rootpath)
                options = resolve(given, config={**config, **ini}, config_file=config_file or "pytest ini")
            except ValueError as exc:
                raise pytest.UsageError(f"rnncheck: {exc}") from None
            self._base = {f: getattr(options, f) for f in _marker_keywords()}
        return dict(self._base)

    def options(self, overrides: dict | None = None):

        values = self.base_values()
        known = _marker_keywords()
        for key, value in (overrides or {}).items():
            if key not in known:
                raise pytest.UsageError(_unknown_keyword(key, known))
            values[key] = value
        try:
            return Options(**values)
        except ValueError as exc:
            raise pytest.UsageError(f"rnncheck: {exc}") from None

    @property
    def gate(self):
        path = self.config.getoption("rnncheck_baseline")
        if not path:
            return None
        if self._gate is None:
            from .gate import Gate

            update = self.config.getoption("rnncheck_update_baseline")
            self._gate = Gate(path, update=update, root=Path(self.config.rootpath))
        return self._gate

    def run(self, item, overrides=None):
        from .runner import verify_case

        opts = self.options(overrides)
        gate = self.gate
        if gate is None:
            return verify_case(item, opts)
        result = gate.run(item, opts)
        if gate.update and gate.recorded:
            # merged into the file under its lock as each case is recorded: an xdist worker that
            # crashes on a later case (a segfault in the user's code) loses none of what it recorded
            gate.finish(opts)
            gate.recorded.clear()
        return result

    def finish(self) -> None:
        if self._gate is not None:
            self._gate.finish(self.options())


SESSION_KEY = pytest.StashKey[RnncheckSession]()


def pytest_sessionfinish(session, exitstatus) -> None:
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.finish()


def _marker_options(node) -> dict:
    marker = node.get_closest_marker("rnncheck")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(
            "@pytest.mark.rnncheck takes keyword options only, e.g. @pytest.mark.rnncheck(budget=5)"
        )
    return dict(marker.kwargs)


# --- the fixture ----------------------------------------------------------------------------


class RnncheckFixture:
    """What the ``rnncheck`` fixture gives a test."""

    def __init__(self, session: RnncheckSession, overrides: dict, test_name: str = "", test_file: str = "") -> None:
        self._session = session
        self._overrides = overrides
        self._test_name, self._test_file = test_name, test_file

    def verify(self, case, **options):
        """Check ``case`` (a TorchCase, NumpyCase or CellCase) and return its CaseResult.

        A case without a name is named after the test, so that a failure's header says which.
        """
        from .runner import verify_case

        if hasattr(case, "bind") and not getattr(case, "name", "") and self._test_name:
            case.name, case.file = self._test_name, case.file or self._test_file
        return verify_case(case, self._session.options({**self._overrides, **options}))

    def assert_ok(self, case, **options):
        """Check ``case``; fail the test with rnncheck's table unless it passed or only warned."""
        result = self.verify(case, **options)
        if result.verdict not in (Verdict.PASS, Verdict.WARN):
            pytest.fail(render_text(result), pytrace=False)
        return result


@pytest.fixture
def rnncheck(request) -> RnncheckFixture:
    """Check gradients inside a test: ``rnncheck.verify(case)`` or ``rnncheck.assert_ok(case)``."""
    return RnncheckFixture(
        request.config.stash[SESSION_KEY], _marker_options(request.node), request.node.name, str(request.node.path)
    )


def _unknown_keyword(key: str, known) -> str:

    near = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"
    return f"@pytest.mark.rnncheck: unknown option {key!r}; {hint}"


def pytest_collection_modifyitems(session, config, items) -> None:
    """A typo in a marker's keywords is one line at collection, before any test runs, not a traceback in it."""
    known = _marker_keywords()
    for item in items:
        for marker in item.iter_markers("rnncheck"):
            for key in marker.kwargs:
                if key not in known:
                    raise pytest.UsageError(f"{item.nodeid}: {_unknown_keyword(key, known)}")


def render_text(result) -> str:

    buf = io.StringIO()
    render_case(make_console(buf), result)
    # the first line is what pytest's short summary shows: the finding that decided it
    return failure_line(result) + "\n" + buf.getvalue()


# --- collection ----------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent):
    if not parent.config.getoption("rnncheck") or file_path.suffix != ".py":
        return None

    if file_path.name in SKIPPED_NAMES or not looks_like_model_file(file_path):
        return None
    return RnncheckFile.from_parent(parent, path=file_path)


class RnncheckFile(pytest.File):
    def collect(self):

        timeout = self.config.stash[SESSION_KEY].base_values()["timeout"]
        cases, problem = load_file(self.path, timeout)
        if problem is not None and problem.fatal:
            raise self.CollectError(f"rnncheck: {problem.file}: {problem.message}")
        for case in cases:
            yield RnncheckItem.from_parent(self, name=case.name, casedef=case)


class RnncheckItem(pytest.Item):
    def __init__(self, *, casedef, **kwargs) -> None:
        super().__init__(**kwargs)
        self.casedef = casedef

    def runtest(self) -> None:
        state = self.config.stash[SESSION_KEY]
        result = state.run(self.casedef, _marker_options(self))
        self.user_properties.append(
            ("rnncheck_verdict", result.verdict.value)
        )  # plain str: xdist sends it between processes
        from .gate import gate_verdict

        verdict = gate_verdict(result) if state.gate is not None else result.verdict
        if verdict not in (Verdict.PASS, Verdict.WARN):
            raise RnncheckFailure(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, RnncheckFailure):
            return render_text(excinfo.value.result)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.casedef.line - 1, f"rnncheck case {self.name}"
