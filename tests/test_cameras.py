"""Camera maths against cases computed by hand (DESIGN.md §4 convention)."""

import math

import pytest
import torch

from align4d_core.scene.cameras import FOVY_DEG, intrinsics, orbit_cameras


def _project(cams, point):
    """Pixel coordinates and depth of a world point, through viewmats and Ks (OpenCV)."""
    p = torch.cat([torch.as_tensor(point, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
    cam = (cams.viewmats.double() @ p)[:, :3]
    uv = (cams.Ks.double() @ cam[..., None])[..., 0]
    return uv[:, :2] / uv[:, 2:], cam[:, 2]


def test_front_camera_sits_on_plus_z_looking_at_the_origin():
    cams = orbit_cameras(0.0, 0.0, 2.0, width=64, dtype=torch.float64)
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(cams.c2w[0], expected)
    # OpenCV world-to-camera: y and z flipped, camera 2 units in front of the origin
    viewmat = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(cams.viewmats[0], viewmat)


@pytest.mark.parametrize(
    "elevation, azimuth, position",
    [
        (0.0, 90.0, (2.0, 0.0, 0.0)),  # azimuth grows from +z toward +x
        (0.0, 180.0, (0.0, 0.0, -2.0)),
        (0.0, -90.0, (-2.0, 0.0, 0.0)),
        (30.0, 0.0, (0.0, 1.0, math.sqrt(3.0))),  # positive elevation = camera above
        (-30.0, 90.0, (math.sqrt(3.0), -1.0, 0.0)),
    ],
)
def test_orbit_positions(elevation, azimuth, position):
    cams = orbit_cameras(elevation, azimuth, 2.0, width=32, dtype=torch.float64)
    torch.testing.assert_close(cams.positions[0], torch.tensor(position, dtype=torch.float64), atol=1e-12, rtol=0)


def test_every_camera_looks_at_the_origin_with_a_rotation_matrix():
    el = torch.tensor([-60.0, -10.0, 0.0, 45.0, 89.0, 90.0])
    az = torch.tensor([0.0, 33.0, 105.0, 195.0, -75.0, 15.0])
    cams = orbit_cameras(el, az, 1.7, width=48, dtype=torch.float64)
    rot = cams.c2w[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(6, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(6, dtype=torch.float64))
    # OpenGL cameras look down their -z axis: that direction points from the camera to the origin
    forward = -rot[:, :, 2]
    torch.testing.assert_close(forward, -cams.positions / 1.7)
    uv, depth = _project(cams, (0.0, 0.0, 0.0))
    torch.testing.assert_close(uv, torch.full((6, 2), 24.0, dtype=torch.float64))
    torch.testing.assert_close(depth, torch.full((6,), 1.7, dtype=torch.float64))


def test_image_axes_right_and_up():
    cams = orbit_cameras(0.0, 0.0, 2.0, width=64, height=48, dtype=torch.float64)
    ((u, v),) = _project(cams, (0.3, 0.0, 0.0))[0]
    assert u > 32 and v == pytest.approx(24)  # world +x appears on the right in the front view
    ((u, v),) = _project(cams, (0.0, 0.3, 0.0))[0]
    assert v < 24 and u == pytest.approx(32)  # world +y appears above the centre (rows grow down)
    side = orbit_cameras(0.0, 90.0, 2.0, width=64, height=48, dtype=torch.float64)
    ((u, v),) = _project(side, (0.0, 0.0, -0.3))[0]
    assert u > 32  # from +x, the object's back (-z) is on the right


def test_intrinsics_from_fovy():
    K = intrinsics(64, 48)
    focal = 24.0 / math.tan(math.radians(FOVY_DEG / 2))
    torch.testing.assert_close(K, torch.tensor([[focal, 0, 32.0], [0, focal, 24.0], [0, 0, 1]], dtype=torch.float64))
    # a point at the top edge of the field of view projects to row 0
    cams = orbit_cameras(0.0, 0.0, 1.0, width=64, height=48, dtype=torch.float64)
    ((u, v),) = _project(cams, (0.0, math.tan(math.radians(FOVY_DEG / 2)), 0.0))[0]
    assert v == pytest.approx(0.0, abs=1e-9)


def test_broadcasting_and_indexing():
    cams = orbit_cameras(0.0, [0.0, 90.0, 180.0, 270.0], [1.0, 2.0, 3.0, 4.0], width=16)
    assert len(cams) == 4 and cams.Ks.shape == (4, 3, 3) and cams.c2w.dtype == torch.float32
    torch.testing.assert_close(cams.positions.norm(dim=-1), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert len(cams[1:3]) == 2 and len(cams[0]) == 1


def test_straight_above_is_well_defined():
    cams = orbit_cameras(90.0, 0.0, 2.0, width=16, dtype=torch.float64)
    assert torch.isfinite(cams.viewmats).all()
    torch.testing.assert_close(
        cams.positions[0], torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0
    )


def test_non_positive_distance_is_refused():
    with pytest.raises(ValueError, match="positive"):
        orbit_cameras(0.0, 0.0, [1.0, 0.0], width=16)
