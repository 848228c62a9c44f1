"""API conventions and architecture rules of the dhde package (in the style of dm_pix's api_test).

* The public API is ``dhde.__all__``: every name exists, every function and class is documented,
  array functions document their shapes, and options (parameters with defaults, after the data
  arguments) are keyword-only, except for the signatures listed in ``POSITIONAL_OPTIONS``.
* Layers: a module imports only from its own layer or lower ones (``LAYERS``), parsed with
  ``ast`` from the sources (module level and inside functions), without importing anything.
* Private names stay private: few uses of another module's ``_name`` (a private helper module is
  private to its own package, e.g. ``dhde.applications._spectral``).
* No module longer than ``MAX_LINES``.

Every allow-list below names its entries one by one with the reason, so that it can only shrink.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import pytest

import dhde

PACKAGE = Path(dhde.__file__).resolve().parent
MAX_LINES = 400
MAX_PRIVATE_USES = 5

# ----------------------------------------------------------------------------- public API

#: Public functions whose options can still be given positionally: name -> those parameters.
#: These signatures predate the keyword-only convention; making them keyword-only is an API
#: change for their owners (issue 14). Remove an entry when its function is fixed (the test
#: fails on stale entries, so the list only shrinks).
POSITIONAL_OPTIONS = {
    "gaussian_blur": ("radius",),
    "gaussian_kernel1d": ("radius",),
    "canny": ("sigma",),
    "scale_map": ("thresholds", "sigma", "floor"),
    "pad_small_to_large": ("mode",),
    "gradient_magnitude": ("method", "pad"),
    "singular_value_feature": ("method",),
    "encode_scale": ("encoding", "c_large", "c_small"),
    "load_model": ("directory",),
    "save_model": ("extra",),
    "joint_bilateral_filter": ("sigma_s", "sigma_r"),
    "rolling_guidance_filter": ("sigma_s", "sigma_r", "iterations"),
    "joint_weighted_median": ("radius", "sigma_r", "iterations"),
    "sparse_defocus_map": ("value",),
    "matting_laplacian_coefficients": ("eps",),
    "propagate": ("gamma", "eps", "tol", "maxiter", "preconditioner"),
    "blur_probability": ("tau",),
    "estimate_defocus": ("model",),  # the model is an input (None = the shipped one), not an option
    "estimate_defocus_batch": ("model",),  # idem
    "overlay_mask": ("color", "alpha"),
    "segment_blur": ("alpha",),
}

#: Public functions whose docstring need not show an array shape, with the reason.
NO_SHAPES = {
    "input_width": "takes a feature-set name and returns an int",
    "init_model": "takes a ModelConfig and a key, returns a model",
    "load_model": "takes a folder, returns a model",
    "save_model": "takes a model and a folder",
}

# An array shape in a docstring: "(H, W, 3)", "(N, 11)", "(C,)", or said in words.
_SHAPE = re.compile(r"\((?:[A-Z]|\d+)[\w*+\-/ ]*(?:,\s*[\w*+\-/ .]*)+\)|\bshape\b|\bany shape\b|\blength\b")


def _public():
    return [(name, getattr(dhde, name, None)) for name in dhde.__all__]


def _functions():
    return [(n, o) for n, o in _public()
            if callable(o) and not inspect.isclass(o) and not isinstance(o, types.ModuleType)]


def test_all_names_exist_once():
    missing = [n for n in dhde.__all__ if not hasattr(dhde, n)]
    assert not missing, f"dhde.__all__ names missing from dhde: {missing}"
    dupes = sorted({n for n in dhde.__all__ if dhde.__all__.count(n) > 1})
    assert not dupes, f"dhde.__all__ lists these names twice: {dupes}"
    namespace: dict = {}
    exec("from dhde import *", namespace)  # noqa: S102 - the star import a user writes
    assert set(dhde.__all__) <= set(namespace)


@pytest.mark.parametrize("name", [n for n, o in _public()
                                  if callable(o) or isinstance(o, types.ModuleType)])
def test_public_names_are_documented(name):
    obj = getattr(dhde, name)
    doc = obj.__doc__ if isinstance(obj, types.ModuleType) else inspect.getdoc(obj)
    assert doc and doc.strip(), f"dhde.{name} has no docstring"


@pytest.mark.parametrize("name", [n for n, _ in _functions()])
def test_options_are_keyword_only(name):
    params = inspect.signature(getattr(dhde, name)).parameters.values()
    positional = tuple(p.name for p in params if p.default is not p.empty
                       and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    allowed = POSITIONAL_OPTIONS.get(name, ())
    extra = [p for p in positional if p not in allowed]
    assert not extra, (f"dhde.{name}: options {extra} can be passed positionally; make them "
                       "keyword-only (put them after '*')")
    stale = [p for p in allowed if p not in positional]
    assert not stale, f"dhde.{name}: {stale} are keyword-only now; remove them from POSITIONAL_OPTIONS"


@pytest.mark.parametrize("name", [n for n, _ in _functions()])
def test_docstrings_document_shapes(name):
    doc = inspect.getdoc(getattr(dhde, name))
    if name in NO_SHAPES:
        return
    assert _SHAPE.search(doc), f"dhde.{name}'s docstring shows no array shape such as (H, W, 3)"


def test_allow_lists_name_public_functions():
    functions = {n for n, _ in _functions()}
    for table in (POSITIONAL_OPTIONS, NO_SHAPES):
        assert set(table) <= functions, f"not public functions of dhde: {sorted(set(table) - functions)}"


# ----------------------------------------------------------------------------- sources

#: Layers, lowest first: a module may import from its own layer or lower ones. The longest
#: matching prefix decides; ``dhde`` itself (the flat re-exports) counts as the applications'
#: layer, the highest it imports from. dhde/__init__.py is exempt.
LAYERS = {
    "dhde.checks": 0, "dhde.labels": 0, "dhde.config": 0, "dhde.ordering": 0,
    "dhde.io": 1,
    "dhde.filters": 2,
    "dhde.features": 3,
    "dhde.model": 4,
    "dhde.propagation": 5,
    "dhde.estimation": 6,
    "dhde.applications": 7, "dhde.data": 7, "dhde": 7,
    "dhde.training": 8, "dhde.evaluation": 8,
    "dhde.cli": 9,
}

#: Imports that break the layering today: (importer, imported module), with the reason.
LAYER_EXCEPTIONS: set = set()

#: Modules without a module docstring yet, with their owner.
NO_DOCSTRING: set = set()


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


SOURCES = _sources()


def _is_module(name: str) -> bool:
    rel = PACKAGE.parent.joinpath(*name.split("."))
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def _layer(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} is in no layer: add its folder to LAYERS")


def _from_module(node: ast.ImportFrom, module: str) -> str:
    """The absolute module of ``from <...> import`` in ``module`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not SOURCES[module][0].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(imported dhde module, imported name or None, local name, line) of every import in ``module``; for
    ``from pkg import sub`` with ``sub`` a module, the module is ``pkg.sub``."""
    for node in ast.walk(SOURCES[module][1]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "dhde" or alias.name.startswith("dhde."):
                    yield alias.name, None, alias.asname, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _from_module(node, module)
            if base != "dhde" and not base.startswith("dhde."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if _is_module(sub):
                    yield sub, None, alias.asname or alias.name, node.lineno
                else:
                    yield base, alias.name, alias.asname or alias.name, node.lineno


def test_module_docstrings():
    missing = [m for m, (_, tree) in SOURCES.items() if not ast.get_docstring(tree) and m not in NO_DOCSTRING]
    assert not missing, f"modules without a docstring: {missing}"


def test_layering():
    bad, used = [], set()
    for module in SOURCES:
        if module == "dhde":
            continue
        for target, _, _, line in _imports(module):
            if _layer(target) > _layer(module):
                if (module, target) in LAYER_EXCEPTIONS:
                    used.add((module, target))
                else:
                    bad.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)}) "
                               f"at line {line}")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)
    assert used == LAYER_EXCEPTIONS, f"stale LAYER_EXCEPTIONS, remove: {sorted(LAYER_EXCEPTIONS - used)}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_to(importer: str, target: str) -> bool:
    """Whether ``target`` is a private module (a component starting with _) of importer's package."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return importer.startswith(".".join(parts[:i]) + ".")
    return False


def private_uses() -> list[str]:
    """Every (importer, module, name) where a dhde module uses another one's private name."""
    uses = set()
    for module, (_, tree) in SOURCES.items():
        aliases = {}
        for target, name, local, _ in _imports(module):
            if name is None:
                aliases[local] = target
                if _private(target.rsplit(".", 1)[-1]) and not _private_to(module, target):
                    uses.add((module, target, "(the module)"))
            elif _private(name) and target != module and not _private_to(module, target):
                uses.add((module, target, name))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if not isinstance(value, ast.Name) or (value.id not in aliases and value.id != "dhde"):
                continue
            target = ".".join([aliases.get(value.id, "dhde")] + chain[::-1])
            if _is_module(target) and target != module and not _private_to(module, target):
                uses.add((module, target, node.attr))
    return [f"{m} uses {t}.{n}" for m, t, n in sorted(uses)]


def test_few_cross_module_private_names():
    uses = private_uses()
    assert len(uses) <= MAX_PRIVATE_USES, (f"{len(uses)} uses of other modules' private names (at most "
                                           f"{MAX_PRIVATE_USES}); make them public or move them:\n"
                                           + "\n".join(uses))


def test_module_length():
    long = {m: n for m, (p, _) in SOURCES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"
