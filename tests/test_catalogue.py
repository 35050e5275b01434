"""Catalogue: the shipped files validate; malformed files fail naming the bad field."""

import textwrap

import pytest

from suite.catalogue import CatalogueError, entries, get_entry, load_catalogue, parse_catalogue_files

GOOD = """
catalogue_version = 3

[[entry]]
id = "phi4/test/L4"
theory = "phi4"
convention = "lecture"
params = { m2 = 1.0, lam = 0.0 }
lattice = [4, 4]
tier = "quick"
description = "test"
source = "this test"
[entry.reference.chi2]
value = 1.0
error = 0.1
provenance = "literature: somewhere"
"""


def write(tmp_path, text, name="a.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_catalogue_is_valid_and_builds():
    version, by_id = load_catalogue()
    assert version >= 1
    assert {"phi4/free/L8", "phi4/free/L16", "phi4/free/L32", "phi4/tutorial2021/L8"} <= set(by_id)
    for entry in by_id.values():
        theory = entry.build_theory()
        assert theory.lattice == entry.lattice
        assert entry.id.startswith(entry.theory + "/")
        assert entry.id.endswith(f"/L{entry.lattice[0]}")
    assert {e.tier for e in entries("quick")} == {"quick"}


def test_free_entries_carry_exact_values():
    refs = get_entry("phi4/free/L16").reference_values()
    assert refs["xi2nd"].value == pytest.approx(4.0)  # m = 4/L: ξ_2nd = 1/m exactly
    assert refs["chi2"].provenance.startswith("exact")


def test_good_file_parses(tmp_path):
    version, by_id = parse_catalogue_files([write(tmp_path, GOOD)])
    assert version == 3
    assert by_id["phi4/test/L4"].reference["chi2"].error == 0.1


@pytest.mark.parametrize("old,new,message", [
    ('lattice = [4, 4]', 'lattice = [0, 4]', "field 'lattice'"),
    ('tier = "quick"', 'tier = "fast"', "field 'tier'"),
    ('description = "test"\n', '', "missing field 'description'"),
    ('m2 = 1.0', 'm2 = "one"', "field 'params.m2'"),
    ('error = 0.1', 'error = -0.1', "field 'error'"),
    ('provenance = "literature: somewhere"', 'provenance = "computed: hmc"', "'command'"),
    ('provenance = "literature: somewhere"', 'provenance = "folklore"', "field 'provenance'"),
    ('source = "this test"', 'source = "this test"\nsauce = 1', "unknown field 'sauce'"),
])
def test_malformed_entries_name_the_field(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue_files([write(tmp_path, GOOD.replace(old, new))])


def test_not_toml_and_duplicates(tmp_path):
    with pytest.raises(CatalogueError, match="not valid TOML"):
        parse_catalogue_files([write(tmp_path, "entry = [")])
    with pytest.raises(CatalogueError, match="duplicate entry id"):
        parse_catalogue_files([write(tmp_path, GOOD + GOOD.split("catalogue_version = 3")[1])])


def test_unknown_id_suggests_close_ones():
    with pytest.raises(CatalogueError, match="did you mean phi4/free/L16"):
        get_entry("phi4/free/L61")
