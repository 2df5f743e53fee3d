"""Motion capture parsing and forward kinematics (common.datasets.mocap) on known configurations."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.core.bones import bone_lengths
from common.utils.errors import UserError
from common.datasets.mocap import (DEEPMIMIC_FRAME_SIZE, URDF_SCALE, Y_UP_TO_Z_UP, forward_kinematics, load_deepmimic,
                          load_urdf_skeleton, parse_bvh, bvh_to_motion, quat_from_euler, quat_slerp,
                          quat_to_matrix, resample)
from common.datasets.demo.motion import pybullet_motion_dir

URDF = pybullet_motion_dir() / "humanoid" / "humanoid.urdf"


def identity_frames(n: int, root=(0.0, 0.9, 0.0), duration: float = 0.1) -> list[list[float]]:
    frame = [duration, *root, 1, 0, 0, 0]
    for size in (4, 4, 4, 1, 4, 4, 1, 4, 1, 4, 4, 1):  # chest, neck, r_hip, r_knee, ... l_elbow
        frame += [1, 0, 0, 0] if size == 4 else [0.0]
    assert len(frame) == DEEPMIMIC_FRAME_SIZE
    return [list(frame) for _ in range(n)]


def write_clip(tmp_path, frames, loop="none"):
    path = tmp_path / "clip.txt"
    path.write_text(json.dumps({"Loop": loop, "Frames": frames}))
    return path


def urdf_origin(name: str) -> np.ndarray:
    import xml.etree.ElementTree as ET
    root = ET.fromstring(URDF.read_bytes().rstrip(b"\0\r\n "))
    joint = next(j for j in root.findall("joint") if j.get("name") == name)
    return np.array([float(v) for v in joint.find("origin").get("xyz").split()]) * URDF_SCALE


def test_zero_rotations_give_urdf_rest_offsets(tmp_path):
    motion = load_deepmimic(write_clip(tmp_path, identity_frames(2)), URDF)
    joints = forward_kinematics(motion)[0]  # (17, 3), Z up
    to_y_up = joints @ Y_UP_TO_Z_UP  # back to the URDF frame
    root = np.array([0.0, 0.9, 0.0])
    np.testing.assert_allclose(to_y_up[0], root, atol=1e-9)
    np.testing.assert_allclose(to_y_up[1], root + urdf_origin("right_hip"), atol=1e-9)
    np.testing.assert_allclose(to_y_up[2], root + urdf_origin("right_hip") + urdf_origin("right_knee"), atol=1e-9)
    np.testing.assert_allclose(to_y_up[3], root + urdf_origin("right_hip") + urdf_origin("right_knee")
                               + urdf_origin("right_ankle"), atol=1e-9)
    np.testing.assert_allclose(to_y_up[8], root + urdf_origin("chest") + urdf_origin("neck"), atol=1e-9)
    np.testing.assert_allclose(to_y_up[16], root + urdf_origin("chest") + urdf_origin("right_shoulder")
                               + urdf_origin("right_elbow") + urdf_origin("right_wrist"), atol=1e-9)
    # Z up: the head is above the pelvis, the ankles below; the subject's right is -y (facing +x)
    assert joints[10, 2] > joints[0, 2] > joints[3, 2]
    assert joints[1, 1] < 0 < joints[4, 1]


def test_knee_angle_bends_the_shank_backwards(tmp_path):
    frames = identity_frames(2)
    frames[0][4 + 4 + 4 + 4 + 4] = -np.pi / 2  # r_knee angle (radians) after root, chest, neck, r_hip
    joints = forward_kinematics(load_deepmimic(write_clip(tmp_path, frames), URDF))[0]
    shank = joints[3] - joints[2]
    thigh = joints[2] - joints[1]
    assert abs(np.dot(shank, thigh)) < 1e-9  # 90 degrees
    assert shank[0] < -0.3  # points backwards (-x: the character faces +x)
    np.testing.assert_allclose(np.linalg.norm(shank), np.linalg.norm(urdf_origin("right_ankle")), atol=1e-9)


def test_root_rotation_turns_the_whole_body(tmp_path):
    frames = identity_frames(2)
    angle = 0.7  # about the URDF's Y (up) axis -> about world Z
    frames[0][4:8] = [np.cos(angle / 2), 0, np.sin(angle / 2), 0]
    motion = load_deepmimic(write_clip(tmp_path, frames), URDF)
    joints = forward_kinematics(motion)
    rel0, rel1 = joints[0] - joints[0, 0], joints[1] - joints[1, 0]
    c, s = np.cos(angle), np.sin(angle)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    np.testing.assert_allclose(rel0, rel1 @ rz.T, atol=1e-9)


def test_real_clips_load_with_constant_bone_lengths():
    root = pybullet_motion_dir() / "data" / "motions"
    for name in ("humanoid3d_walk.txt", "walker/turn_left0.txt"):
        motion = load_deepmimic(root / name, URDF)
        joints = forward_kinematics(motion)
        assert joints.shape == (motion.num_frames, 17, 3) and motion.loop
        assert bone_lengths(joints).std(axis=0).max() < 1e-9
        assert 1.4 < joints[:, 10, 2].mean() - joints[:, 3, 2].mean() < 1.8  # head above ankle, metres


def test_urdf_skeleton_order_and_axes():
    skeleton, axes = load_urdf_skeleton(URDF)
    assert skeleton.names[0] == "root" and len(skeleton.names) == 15
    assert all(skeleton.parents[j] < j for j in range(1, len(skeleton.names)))
    np.testing.assert_allclose(axes["left_knee"], [0, 0, 1])


def test_bad_deepmimic_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="44 numbers"):
        load_deepmimic(write_clip(tmp_path, [[0.1, 0, 0]] * 3), URDF)


TINY_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT LeftHip
  {
    OFFSET 10 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT LeftKnee
    {
      OFFSET 0 -40 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 -40 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 90 2 0 0 0 0 0 0 0 0 0
1 90 2 90 0 0 0 0 0 0 0 0
"""


def test_parse_tiny_bvh():
    bvh = parse_bvh(TINY_BVH)
    assert bvh.names == ["Hips", "LeftHip", "LeftKnee"]
    assert bvh.parents == [-1, 0, 1]
    np.testing.assert_allclose(bvh.offsets[2], [0, -40, 0])
    assert bvh.channels[0][:3] == ["Xposition", "Yposition", "Zposition"]
    assert bvh.frame_time == 0.5 and bvh.data.shape == (2, 12)


def test_bvh_forward_kinematics_known_rotation():
    bvh = parse_bvh(TINY_BVH)
    markers = {"l_hip": ("LeftHip", (0, 0, 0)), "r_hip": ("LeftHip", (0, 0, 0)), "l_knee": ("LeftKnee", (0, 0, 0))}
    markers.update({h: ("Hips", (0, 0, 0)) for h in ("r_knee", "r_ankle", "l_ankle", "spine", "thorax", "neck",
                                                    "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder",
                                                    "r_elbow", "r_wrist")})
    motion = bvh_to_motion(bvh, "tiny", markers=markers)
    joints = forward_kinematics(motion) @ Y_UP_TO_Z_UP  # back to the file's Y-up frame, metres
    np.testing.assert_allclose(joints[0, 5], [0.11, 0.5, 0.02], atol=1e-9)  # l_knee at rest
    # frame 1: 90 degrees about Z at the root swings the leg: hip offset (0.1, 0, 0) -> (0, 0.1, 0)
    np.testing.assert_allclose(joints[1, 4], [0.01, 1.0, 0.02], atol=1e-9)
    np.testing.assert_allclose(joints[1, 5], [0.41, 1.0, 0.02], atol=1e-9)


def test_bvh_malformed_is_a_user_error():
    with pytest.raises(UserError):
        parse_bvh("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\n"
                  "MOTION\nFrames: 2\nFrame Time: 0.1\n1 2 3\n")


def test_euler_order_and_slerp():
    q = quat_from_euler(np.array([90.0, 90.0, 0.0]), "ZXY")
    rz = quat_to_matrix(quat_from_euler(np.array([90.0, 0, 0]), "ZXY"))
    rx = quat_to_matrix(quat_from_euler(np.array([0, 90.0, 0]), "ZXY"))
    np.testing.assert_allclose(quat_to_matrix(q), rz @ rx, atol=1e-12)
    a = np.array([1.0, 0, 0, 0])
    b = np.array([np.cos(0.5), 0, 0, np.sin(0.5)])  # 1 rad about z
    half = quat_slerp(a, b, np.array(0.5))
    np.testing.assert_allclose(half, [np.cos(0.25), 0, 0, np.sin(0.25)], atol=1e-12)


def test_resample_interpolates_root_and_rotation(tmp_path):
    frames = identity_frames(2, duration=0.2)
    frames[1][1] = 1.0  # root x moves 1 m in 0.2 s
    motion = load_deepmimic(write_clip(tmp_path, frames), URDF)
    half = resample(motion, np.array([0.0, 0.1, 0.2]))
    np.testing.assert_allclose(half.root_position[:, 0], [0.0, 0.5, 1.0], atol=1e-12)
    with pytest.raises(ValueError):
        resample(motion, np.array([0.3]))
