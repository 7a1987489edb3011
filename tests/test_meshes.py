"""Generated and read triangle meshes are valid: positive areas, holes empty, boundary tags right."""
import math

import meshio
import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.meshes import (TriangleMesh, check_mesh, disk_mesh, lshape_mesh, plate_mesh, random_holes, read_mesh,
                            rectangle_mesh, refine)
from pde_lab.pdes.poisson_fem import level_mesh

HOLES = [(0.5, 0.5, 0.2), (1.2, 0.4, 0.15), (1.6, 0.7, 0.18)]


def _tag_nodes(mesh, tag):
    return mesh.nodes[mesh.boundary_nodes(tag)]


@pytest.mark.parametrize("h", [0.2, 0.1, 0.05])
def test_disk(h):
    m = disk_mesh(h)
    assert check_mesh(m) == [] and np.all(m.areas() > 0)
    r = np.linalg.norm(_tag_nodes(m, "outer"), axis=1)
    assert np.allclose(r, 1.0, atol=1e-12)
    # Every node that is not on the circle is inside the disk, and no node on the circle is interior.
    inner = np.setdiff1d(np.arange(m.n_nodes), m.boundary_nodes())
    assert np.all(np.linalg.norm(m.nodes[inner], axis=1) < 1 - 0.4 * h)
    n = len(m.boundary_nodes())
    assert math.isclose(m.areas().sum(), 0.5 * n * math.sin(2 * math.pi / n), rel_tol=1e-12)
    assert m.h < 1.75 * h and m.min_angle() > 20


def test_lumped_mass_is_the_row_sum_of_the_p1_mass_matrix():
    from pde_lab.solvers.fem import FEMSpace

    m = plate_mesh(0.1, HOLES)
    w = m.lumped_mass()
    np.testing.assert_allclose(w, np.asarray(FEMSpace(m).mass().sum(axis=1)).ravel(), rtol=1e-12)
    assert math.isclose(w.sum(), m.areas().sum(), rel_tol=1e-12) and np.all(w > 0)


def test_lshape_tags_and_corner():
    m = lshape_mesh(0.25)
    assert check_mesh(m, 3.0) == []
    c = m.nodes[m.triangles].mean(axis=1)
    assert not np.any((c[:, 0] > 0) & (c[:, 1] < 0)), "a triangle lies in the removed quadrant"
    b = _tag_nodes(m, "outer")
    on_edge = (np.isclose(np.abs(b[:, 0]), 1) | np.isclose(np.abs(b[:, 1]), 1)
               | (np.isclose(b[:, 0], 0) & (b[:, 1] <= 0)) | (np.isclose(b[:, 1], 0) & (b[:, 0] >= 0)))
    assert on_edge.all()
    assert any(np.allclose(p, 0) for p in b), "the re-entrant corner is a boundary node"


def test_rectangle_tags():
    m = rectangle_mesh(0.25, ((0.0, 2.0), (0.0, 1.0)))
    assert np.allclose(_tag_nodes(m, "left")[:, 0], 0) and np.allclose(_tag_nodes(m, "right")[:, 0], 2)
    assert np.allclose(_tag_nodes(m, "bottom")[:, 1], 0) and np.allclose(_tag_nodes(m, "top")[:, 1], 1)
    assert len(m.boundary_nodes()) == 2 * (8 + 4)


@pytest.mark.parametrize("h", [0.1, 0.05])
def test_plate_holes_are_empty_and_tagged(h):
    m = plate_mesh(h, HOLES)
    assert check_mesh(m) == [] and np.all(m.areas() > 0)
    c = m.nodes[m.triangles].mean(axis=1)
    for cx, cy, r in HOLES:
        assert np.all(np.linalg.norm(c - [cx, cy], axis=1) > r), "a triangle lies inside a hole"
        assert np.all(np.linalg.norm(m.nodes - [cx, cy], axis=1) > r - 1e-12)
    hole = _tag_nodes(m, "hole")
    d = np.min([np.abs(np.linalg.norm(hole - [cx, cy], axis=1) - r) for cx, cy, r in HOLES], axis=0)
    assert np.all(d < 1e-12)
    outer = _tag_nodes(m, "outer")
    assert np.all(np.isclose(outer[:, 0], 0) | np.isclose(outer[:, 0], 2) | np.isclose(outer[:, 1], 0)
                  | np.isclose(outer[:, 1], 1))
    # Each hole boundary is one closed loop: as many hole facets as hole nodes.
    assert np.sum(m.facet_tags == m.tag_names.index("hole")) == len(hole)
    expected = 2.0 - sum(0.5 * n * r * r * math.sin(2 * math.pi / n)
                         for (cx, cy, r), n in ((hl, np.sum(np.isclose(np.linalg.norm(hole - hl[:2], axis=1), hl[2])))
                                                for hl in HOLES))
    assert math.isclose(m.areas().sum(), expected, rel_tol=1e-10)


def test_random_holes_are_reproducible_and_disjoint():
    a = random_holes(np.random.default_rng(7), 5)
    b = random_holes(np.random.default_rng(7), 5)
    assert a == b and len(a) == 5
    for i, (x, y, r) in enumerate(a):
        assert 0 < x - r and x + r < 2 and 0 < y - r and y + r < 1
        for x2, y2, r2 in a[:i]:
            assert math.hypot(x - x2, y - y2) >= r + r2
    assert random_holes(np.random.default_rng(8), 5) != a


def test_level_meshes_are_deterministic():
    a, b = level_mesh("hard", 12), level_mesh("hard", 12)
    assert np.array_equal(a.nodes, b.nodes) and np.array_equal(a.triangles, b.triangles)
    assert a.geometry == "plate" and len(a.geometry_params["holes"]) == 4
    assert level_mesh("easy", 12).geometry == "disk" and level_mesh("lshape", 12).geometry == "lshape"


def test_refine_keeps_boundary_on_the_circle():
    m = disk_mesh(0.25)
    r = refine(m)
    assert r.n_triangles == 4 * m.n_triangles and check_mesh(r) == []
    assert np.allclose(np.linalg.norm(_tag_nodes(r, "outer"), axis=1), 1.0, atol=1e-12)
    assert abs(r.areas().sum() - math.pi) < abs(m.areas().sum() - math.pi) / 3
    p = refine(plate_mesh(0.1, HOLES))
    assert check_mesh(p) == [] and p.tag_names == ("outer", "hole")
    hole = _tag_nodes(p, "hole")
    d = np.min([np.abs(np.linalg.norm(hole - [cx, cy], axis=1) - r) for cx, cy, r in HOLES], axis=0)
    assert np.all(d < 1e-12)


def test_check_mesh_finds_defects():
    m = rectangle_mesh(0.5)
    flipped = m.triangles.copy()
    flipped[0] = flipped[0, ::-1]
    bad = TriangleMesh(m.nodes, flipped, m.boundary_facets, m.facet_tags, m.tag_names)
    assert any("non-positive area" in e for e in check_mesh(bad))
    out = m.triangles.copy()
    out[0, 0] = m.n_nodes
    bad = TriangleMesh(m.nodes, out, m.boundary_facets, m.facet_tags, m.tag_names)
    assert any("indices" in e for e in check_mesh(bad))
    assert any("area" in e for e in check_mesh(m, expected_area=2.0))


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="h"):
        disk_mesh(0.0)
    with pytest.raises(UserError, match="holes 0 and 1"):
        plate_mesh(0.1, [(0.5, 0.5, 0.2), (0.7, 0.5, 0.2)])
    with pytest.raises(UserError, match="strictly inside"):
        plate_mesh(0.1, [(0.1, 0.5, 0.2)])
    with pytest.raises(UserError, match="could not place"):
        random_holes(np.random.default_rng(0), 50, radius_range=(0.3, 0.4))


def test_read_mesh_roundtrip_with_tags(tmp_path):
    m = plate_mesh(0.1, HOLES[:1])
    path = tmp_path / "plate.vtu"
    meshio.write(path, m.to_meshio())
    r = read_mesh(path)
    assert np.allclose(r.nodes, m.nodes) and np.array_equal(r.triangles, m.triangles)
    # Tags come back from the line cells' integer data, named by their numbers.
    assert set(r.tag_names) == {"0", "1"}
    for t, name in enumerate(m.tag_names):
        assert np.array_equal(r.boundary_nodes(str(t)), m.boundary_nodes(name))


def test_read_mesh_reorients_and_rejects(tmp_path):
    m = disk_mesh(0.3)
    path = tmp_path / "cw.vtu"
    meshio.write(path, meshio.Mesh(np.column_stack([m.nodes, np.zeros(m.n_nodes)]), [("triangle", m.triangles[:, ::-1])]))
    r = read_mesh(path)
    assert np.all(r.areas() > 0) and r.tag_names == ("boundary",)
    with pytest.raises(UserError, match="does not exist"):
        read_mesh(tmp_path / "nope.vtu")
    lines = tmp_path / "lines.vtu"
    meshio.write(lines, meshio.Mesh(np.zeros((2, 3)), [("line", np.array([[0, 1]]))]))
    with pytest.raises(UserError, match="no triangles"):
        read_mesh(lines)


def test_read_gmsh_physical_names(tmp_path):
    m = plate_mesh(0.1, HOLES[:1])
    phys = m.facet_tags + 1
    mm = meshio.Mesh(np.column_stack([m.nodes, np.zeros(m.n_nodes)]),
                     [("triangle", m.triangles), ("line", m.boundary_facets)],
                     cell_data={"gmsh:physical": [np.full(m.n_triangles, 3), phys],
                                "gmsh:geometrical": [np.full(m.n_triangles, 3), phys]},
                     field_data={"outer": np.array([1, 1]), "hole": np.array([2, 1]), "plate": np.array([3, 2])})
    path = tmp_path / "plate.msh"
    meshio.write(path, mm, file_format="gmsh22", binary=False)
    r = read_mesh(path)
    assert r.tag_names == ("hole", "outer")
    for tag in ("hole", "outer"):
        assert np.array_equal(r.boundary_nodes(tag), m.boundary_nodes(tag))
