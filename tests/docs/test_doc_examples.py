"""Every Python block of docs/ runs, as written (see doc_blocks.py for the marks).

Each block is one test, against SQLite or the real PostgreSQL / MariaDB its mark asks for.
A block marked ``fragment`` is skipped with its reason; any other block must run without
an error (or raise exactly what its ``expect=`` says), and its ``check`` must hold. A
block that is neither runnable nor marked fails here, so no documented example drifts
from the code.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import doctest
import inspect
import sys
import types
from pathlib import Path
from typing import Any

import doc_blocks
import doc_setups
import pytest
from doc_blocks import Block
from doc_setups import DocEnv, Namespace

import structum_lab.plugins.database as package

BLOCKS = doc_blocks.blocks()
MODULE = "structum_doc_example"


def _exception(name: str) -> type[BaseException]:
    found = getattr(package, name, None) or getattr(builtins, name, None)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise LookupError(f"expect={name}: no such exception in structum_lab.plugins.database or builtins")
    return found


def _compile(block: Block) -> types.CodeType:
    if block.is_doctest:  # run by doctest, statement by statement
        return compile("", f"<{block.id}>", "exec")
    return compile(block.source, f"<{block.id}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def _doctest(block: Block, ns: Namespace) -> None:
    test = doctest.DocTestParser().get_doctest(block.source, ns, block.id, str(block.path), block.line)
    assert test.examples, f"{block.id}: a doctest block without a >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    runner.run(test, out=report.append, clear_globs=False)
    if runner.failures:
        pytest.fail(f"{block.id}: the doctest's output differs:\n{''.join(report)}", pytrace=False)


def _run_one(block: Block, code: types.CodeType, ns: Namespace) -> Any:
    """Run a block; returns the coroutine of an asyncio block (to be awaited)."""
    if block.is_doctest:
        _doctest(block, ns)
        return None
    ns["_source"] = block.source
    return eval(code, ns)  # noqa: S307 - the documentation's own example, on purpose


def _expecting(block: Block) -> Any:
    if block.expect is None:
        return None
    return pytest.raises(_exception(block.expect))


async def _run_async(chain: list[Block], codes: list[types.CodeType], ns: Namespace, env: DocEnv) -> None:
    try:
        for block, code in zip(chain, codes, strict=True):
            expecting = _expecting(block)
            if expecting is None:
                result = _run_one(block, code, ns)
                if inspect.iscoroutine(result):
                    await result
                continue
            with expecting:
                result = _run_one(block, code, ns)
                if inspect.iscoroutine(result):
                    await result
    finally:
        await doc_setups.ashutdown_all(doc_setups.databases_in(ns, env.created))  # on the loop they used


def run_chain(chain: list[Block], env: DocEnv) -> Namespace:
    """Run ``chain`` (a block and the blocks it continues) in one namespace; returns it."""
    head = chain[0]
    env.kind = head.db
    unknown = [name for b in chain for name in b.setups if name not in doc_setups.SETUPS]
    unknown += [b.check for b in chain if b.check and b.check not in doc_setups.CHECKS]
    assert not unknown, f"unknown setup or check names: {unknown} (see tests/docs/doc_setups.py)"
    codes = [_compile(block) for block in chain]
    is_async = any(code.co_flags & inspect.CO_COROUTINE for code in codes)
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    plugins = set(map(id, package.get_plugin_manager().pluggy.get_plugins()))
    ns = module.__dict__
    try:
        db = env.make_db()
        if db is not None:
            env.names["db"] = db
        for name in head.setups:
            doc_setups.SETUPS[name](env)
        ns.update(env.names)
        try:
            if is_async:
                asyncio.run(_run_async(chain, codes, ns, env))
            else:
                for block, code in zip(chain, codes, strict=True):
                    expecting = _expecting(block)
                    if expecting is None:
                        _run_one(block, code, ns)
                    else:
                        with expecting:
                            _run_one(block, code, ns)
            if chain[-1].check:  # the checks of the blocks continued ran in their own tests
                doc_setups.CHECKS[chain[-1].check](env, ns)
        finally:
            for cleanup in reversed(env.cleanups):
                cleanup()
    finally:
        leftovers = doc_setups.databases_in(ns, env.created)
        if leftovers:
            asyncio.run(doc_setups.ashutdown_all(leftovers))
        sys.modules.pop(MODULE, None)
        manager = package.get_plugin_manager()
        for plugin in manager.pluggy.get_plugins():
            if id(plugin) not in plugins and not isinstance(plugin, types.ModuleType):  # backends stay loaded
                manager.unregister(plugin)  # an observer a block registered and left behind
    return ns


@pytest.fixture
def doc_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    with doc_setups.working_directory_reset():
        yield DocEnv(request, tmp_path, monkeypatch)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_doc_example(block: Block, doc_env: DocEnv) -> None:
    assert not block.errors, f"{block.id}: {block.mark}: " + "; ".join(block.errors)
    if block.fragment is not None:
        pytest.skip(f"a fragment, on purpose: {block.fragment}")
    run_chain(doc_blocks.chain(block, BLOCKS), doc_env)


def test_every_mark_precedes_a_python_block() -> None:
    stray = [f"{m.path}:{m.line}: {m.text}" for m in doc_blocks.stray_marks()]
    assert not stray, "doc-test marks not followed by a ```python block:\n" + "\n".join(stray)


def test_the_pages_have_blocks() -> None:
    """The scanner finds the blocks (a broken fence pattern would make every test vanish)."""
    assert len(BLOCKS) >= 50
    assert {b.path.name for b in BLOCKS} >= {"index.md", "quickstart.md", "transactions.md", "fastapi.md"}
    runnable = [b for b in BLOCKS if b.fragment is None]
    assert len(runnable) > 2 * (len(BLOCKS) - len(runnable)), "most blocks run; few are fragments"


# -- the harness itself --------------------------------------------------------------------


def _synthetic(tmp_path: Path, text: str) -> list[Block]:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return [item for item in doc_blocks.scan(page) if isinstance(item, Block)]


def test_an_unmarked_block_that_cannot_run_fails(doc_env: DocEnv, tmp_path: Path) -> None:
    (block,) = _synthetic(tmp_path, "# x\n\n```python\nconn.execute('SELECT 1')\n```\n")
    with pytest.raises(NameError):
        run_chain([block], doc_env)


def test_marks_are_read(tmp_path: Path) -> None:
    text = (
        "<!-- doc-test: fragment: a method of the class above -->\n```python\n    def f(self): ...\n```\n\n"
        "<!-- doc-test: db=psycopg setup=tables,app check=handled -->\n\n```python\nx = 1\n```\n"
        "<!-- doc-test: continue expect=TransactionError -->\n```py\ny = 2\n```\n"
        "<!-- doc-test: fragment -->\n```python\nz\n```\n"
        "<!-- doc-test: dbx=sqlite -->\n```python\nz\n```\n"
    )
    fragment, marked, continued, no_reason, unknown = _synthetic(tmp_path, text)
    assert fragment.fragment == "a method of the class above"
    assert (marked.db, marked.setups, marked.check) == ("psycopg", ("tables", "app"), "handled")
    assert continued.continues and continued.expect == "TransactionError"
    assert doc_blocks.chain(continued, [fragment, marked, continued]) == [marked, continued]
    assert no_reason.errors and unknown.errors


def test_an_async_block_runs_in_an_event_loop(doc_env: DocEnv, tmp_path: Path) -> None:
    (block,) = _synthetic(
        tmp_path,
        "<!-- doc-test: db=async-sqlite -->\n```python\n"
        "async with db.transaction() as conn:\n    value = await (await conn.execute('SELECT 41 + 1')).scalar()\n```\n",
    )
    assert run_chain([block], doc_env)["value"] == 42


def test_expect_requires_the_error(doc_env: DocEnv, tmp_path: Path) -> None:
    (block,) = _synthetic(tmp_path, "<!-- doc-test: expect=TransactionError -->\n```python\nx = 1\n```\n")
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        run_chain([block], doc_env)
