"""``mp-slam import euroc``: the ASL layout with EuRoC's published calibration (MH_01's sensor.yaml
values) is read, rectified and written as the stereo topics; errors are typed; a distorted,
unaligned rig made from real KITTI images is rectified well enough for the VO to track it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.euroc import read_euroc, stereo_rectification
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo_bag import BagFrames
from mp_slam_ros.pipelines.vo_config import SensorMode

EXCERPT = Path(os.environ.get("MP_SLAM_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data" / "kitti_stereo_excerpt"

#: EuRoC MH_01's cam0 / cam1 sensor.yaml: T_BS (row-major), intrinsics, radial-tangential distortion
EUROC = {
    "cam0": ([0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
              0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
              -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949, 0.0, 0.0, 0.0, 1.0],
             [458.654, 457.296, 367.215, 248.375], [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]),
    "cam1": ([0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556,
              0.999598781151, 0.0130119051815, 0.0251588363115, 0.0453689425024,
              -0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038, 0.0, 0.0, 0.0, 1.0],
             [457.587, 456.134, 379.999, 255.238], [-0.28368365, 0.07451284, -0.00010473, -3.55590700e-05]),
}


def sensor_yaml(T_BS: list[float], intrinsics: list[float], distortion: list[float], size: tuple[int, int],
                model: str = "radial-tangential") -> str:
    """A sensor.yaml as EuRoC writes it."""

    def numbers(values: list[float]) -> str:
        return "[" + ", ".join(repr(float(v)) for v in values) + "]"

    return (f"# General sensor definitions.\nsensor_type: camera\nT_BS:\n  cols: 4\n  rows: 4\n  data: {numbers(T_BS)}\n"
            f"rate_hz: 20\nresolution: [{size[0]}, {size[1]}]\ncamera_model: pinhole\nintrinsics: {numbers(intrinsics)}\n"
            f"distortion_model: {model}\ndistortion_coefficients: {numbers(distortion)}\n")


def write_euroc(root: Path, images: dict[str, list[np.ndarray]], stamps_ns: list[int],
                calibration: dict = EUROC, truth: list[str] | None = None) -> Path:
    """An ASL folder ``root/mav0`` with the given images per camera (same stamps) and calibration."""
    for cam, frames in images.items():
        folder = root / "mav0" / cam
        (folder / "data").mkdir(parents=True)
        lines = ["#timestamp [ns],filename"]
        for stamp, pixels in zip(stamps_ns, frames):
            cv2.imwrite(str(folder / "data" / f"{stamp}.png"), pixels)
            lines.append(f"{stamp},{stamp}.png")
        (folder / "data.csv").write_text("\n".join(lines) + "\n")
        height, width = frames[0].shape
        (folder / "sensor.yaml").write_text(sensor_yaml(*calibration[cam], (width, height)))
    if truth is not None:
        folder = root / "mav0" / "state_groundtruth_estimate0"
        folder.mkdir(parents=True)
        header = "#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z []"
        (folder / "data.csv").write_text("\n".join([header, *truth]) + "\n")
    return root


def _random_sequence(root: Path, frames: int = 3) -> Path:
    rng = np.random.default_rng(0)
    stamps = [1403636579763555584 + 50_000_000 * k for k in range(frames)]
    images = {cam: [rng.integers(0, 255, (480, 752), dtype=np.uint8) for _ in stamps] for cam in ("cam0", "cam1")}
    truth = [f"{s},{0.1 * k},0,0,1,0,0,0" for k, s in enumerate(stamps)]
    return write_euroc(root, images, stamps, truth=truth)


def _bilinear(map_x: np.ndarray, map_y: np.ndarray, u: float, v: float) -> np.ndarray:
    """The raw pixel that a rectification map takes to the rectified pixel ``(u, v)``."""
    point = np.array([[[u, v]]], np.float32)
    return np.array([cv2.remap(m, point[..., 0], point[..., 1], cv2.INTER_LINEAR)[0, 0] for m in (map_x, map_y)])


#: TUM-VI-like equidistant (fisheye) coefficients k1..k4 with EuRoC's rig (the model, not a real calibration)
EQUIDISTANT = {"cam0": [0.0034, 0.0007, -0.0073, 0.0020], "cam1": [0.0035, 0.0008, -0.0072, 0.0019]}


@pytest.mark.parametrize("model", ["radial-tangential", "equidistant"])
def test_rectification_maps_points_of_the_scene_onto_common_rows(tmp_path: Path, model: str) -> None:
    """3-D points seen by both (distorted) cameras land on the same rectified row, at the
    disparity fx b / Z of the rectified left camera that the bag's tf_static names."""
    root = _random_sequence(tmp_path / "MH_01_easy")
    if model == "equidistant":
        for cam in ("cam0", "cam1"):
            T_BS, intrinsics, _ = EUROC[cam]
            (root / "mav0" / cam / "sensor.yaml").write_text(sensor_yaml(T_BS, intrinsics, EQUIDISTANT[cam], (752, 480), model))
    sequence = read_euroc(root)
    rig = stereo_rectification(sequence.cam0, sequence.cam1)
    assert rig.baseline_m == pytest.approx(0.110, abs=0.002)  # EuRoC's stereo baseline
    rng = np.random.default_rng(1)
    checked = 0
    for X_rect in np.column_stack([rng.uniform(-1.5, 1.5, 30), rng.uniform(-1.0, 1.0, 30), rng.uniform(2.0, 8.0, 30)]):
        u, v = rig.camera.fx * X_rect[0] / X_rect[2] + rig.camera.cx, rig.camera.fy * X_rect[1] / X_rect[2] + rig.camera.cy
        u_right = u - rig.camera.fx * rig.baseline_m / X_rect[2]
        if not (2 <= u_right and u < rig.camera.width - 2 and 2 <= v < rig.camera.height - 2):
            continue
        X_body = rig.T_body_rect[:3, :3] @ X_rect + rig.T_body_rect[:3, 3]
        for camera, (map_x, map_y), u_rect in ((sequence.cam0, rig.maps[0], u), (sequence.cam1, rig.maps[1], u_right)):
            T_cam_body = np.linalg.inv(camera.T_body_cam)
            X_cam = T_cam_body[:3, :3] @ X_body + T_cam_body[:3, 3]
            project = cv2.fisheye.projectPoints if model == "equidistant" else cv2.projectPoints
            raw, _ = project(X_cam[None, None], np.zeros(3), np.zeros(3), camera.K, camera.distortion)
            np.testing.assert_allclose(_bilinear(map_x, map_y, u_rect, v), raw.ravel(), atol=0.05)
        checked += 1
    assert checked >= 20


def test_import_writes_rectified_stereo_topics_and_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _random_sequence(tmp_path / "MH_01_easy")
    (src / "mav0" / "cam1" / "data.csv").write_text((src / "mav0" / "cam1" / "data.csv").read_text() + "1403636600000000000,spare.png\n")
    assert main(["import", "euroc", str(src), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "3 stereo pairs, rectified; 1 images without a partner skipped" in capsys.readouterr().out
    rig = stereo_rectification(*(lambda s: (s.cam0, s.cam1))(read_euroc(src / "mav0")))
    with BagFrames(tmp_path / "out" / "bag") as bag:
        assert bag.mode is SensorMode.STEREO and bag.topics.image == "/left/image_rect"
        frames = list(bag)
        np.testing.assert_allclose(bag.T_base_cam, rig.T_body_rect, atol=1e-6)
    assert len(frames) == 3 and frames[0].image.shape == (480, 752)
    assert frames[0].stamp_ns == 1403636579763555584  # the dataset's stamps are kept
    assert frames[0].camera.baseline_m == pytest.approx(rig.baseline_m)
    assert not np.any(frames[0].camera.distortion_coeffs)
    truth = read_tum(tmp_path / "out" / "groundtruth.tum")
    np.testing.assert_allclose(truth.positions_m[2], [0.2, 0.0, 0.0], atol=1e-9)


def test_a_kalibr_camchain_calibrates_a_tum_vi_style_export(tmp_path: Path) -> None:
    """TUM-VI's EuRoC-format exports have no sensor.yaml but ``dso/camchain.yaml`` (Kalibr:
    ``T_cam_imu`` as rows, ``distortion_coeffs``): found beside ``mav0/`` and read as the same rig."""
    reference = read_euroc(_random_sequence(tmp_path / "euroc"))
    root = _random_sequence(tmp_path / "dataset-room1_512_16")
    chain = []
    for cam in ("cam0", "cam1"):
        (root / "mav0" / cam / "sensor.yaml").unlink()
        T_BS, intrinsics, distortion = EUROC[cam]
        T_cam_imu = np.linalg.inv(np.array(T_BS).reshape(4, 4))
        rows = ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in T_cam_imu)
        chain.append(f"{cam}:\n  T_cam_imu: [{rows}]\n  camera_model: pinhole\n  distortion_coeffs: {[float(d) for d in distortion]}\n"
                     f"  distortion_model: radial-tangential\n  intrinsics: {[float(v) for v in intrinsics]}\n  resolution: [752, 480]\n")
    (root / "dso").mkdir()
    (root / "dso" / "camchain.yaml").write_text("".join(chain))
    sequence = read_euroc(root)
    for got, want in ((sequence.cam0, reference.cam0), (sequence.cam1, reference.cam1)):
        np.testing.assert_allclose(got.T_body_cam, want.T_body_cam, atol=1e-9)
        np.testing.assert_allclose(got.K, want.K)
        np.testing.assert_allclose(got.distortion, want.distortion)
    assert main(["import", "euroc", str(root), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    (root / "dso" / "camchain.yaml").write_text("cam0:\n  intrinsics: [1, 1, 1, 1]\n")
    with pytest.raises(FileFormatError, match="camchain.yaml: field cam0.distortion_model=''"):
        read_euroc(root)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda mav: (mav / "cam1" / "sensor.yaml").unlink(), "cam1/sensor.yaml: missing"),
        (lambda mav: (mav / "cam0" / "sensor.yaml").write_text(sensor_yaml(*EUROC["cam0"], (752, 480), model="fov")),
         "distortion_model='fov'"),
        (lambda mav: (mav / "cam0" / "sensor.yaml").write_text(sensor_yaml(EUROC["cam0"][0][:12], *EUROC["cam0"][1:], (752, 480))),
         "T_BS: expected 16 numbers"),
        (lambda mav: (mav / "cam1" / "sensor.yaml").write_text(sensor_yaml(*EUROC["cam1"], (640, 480))), "differs from cam0"),
        (lambda mav: (mav / "cam0" / "data.csv").write_text("#timestamp [ns],filename\nabc,1.png\n"), "data.csv:2"),
        (lambda mav: (mav / "cam1" / "data.csv").write_text("1,1.png\n"), "share no timestamp"),
        (lambda mav: (mav / "state_groundtruth_estimate0" / "data.csv").write_text("1403636579763555584,0,0,nan,1,0,0,0\n"),
         "data.csv:1: field p_z='nan' is not finite"),
    ],
)
def test_damaged_layouts_raise_file_errors(tmp_path: Path, damage, words: str) -> None:  # type: ignore[no-untyped-def]
    root = _random_sequence(tmp_path / "seq")
    damage(root / "mav0")
    with pytest.raises(FileFormatError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_euroc(root)


def _distorted_rig_from_kitti(root: Path) -> tuple[Path, float]:
    """The KITTI excerpt's rectified pairs re-imaged by a EuRoC-like rig: barrel distortion and
    each camera turned by about a degree, written in the ASL layout with that calibration (the
    body frame is KITTI's rectified left camera). Returns the folder and KITTI's baseline."""
    from mp_slam_ros.io.kitti import read_kitti

    kitti = read_kitti(EXCERPT)
    P = kitti.P_left
    K = np.array([[P[0, 0], 0.0, P[0, 2]], [0.0, P[1, 1], P[1, 2]], [0.0, 0.0, 1.0]])
    turns = {"cam0": cv2.Rodrigues(np.radians([0.4, -1.0, 0.3]))[0], "cam1": cv2.Rodrigues(np.radians([-0.5, 0.8, -0.2]))[0]}
    distortion = {"cam0": [-0.08, 0.01, 0.0004, -0.0002], "cam1": [-0.07, 0.008, -0.0003, 0.0001]}
    offsets = {"cam0": np.zeros(3), "cam1": np.array([kitti.baseline_m, 0.0, 0.0])}
    first = cv2.imread(str(kitti.left_images[0]), cv2.IMREAD_GRAYSCALE)
    height, width = first.shape
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1).reshape(-1, 1, 2)
    calibration, maps = {}, {}
    for cam in ("cam0", "cam1"):
        T_body_cam = np.eye(4)
        T_body_cam[:3, :3], T_body_cam[:3, 3] = turns[cam], offsets[cam]  # x_rectified = R x_cam + offset
        calibration[cam] = (T_body_cam.ravel().tolist(), [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], distortion[cam])
        rays = cv2.undistortPoints(grid, K, np.array(distortion[cam])).reshape(-1, 2)  # raw pixel -> ray in cam
        rays = np.column_stack([rays, np.ones(len(rays))]) @ turns[cam].T  # the ray in the rectified camera
        pixels = (rays[:, :2] / rays[:, 2:]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
        maps[cam] = pixels[:, 0].reshape(height, width).astype(np.float32), pixels[:, 1].reshape(height, width).astype(np.float32)
    stamps = [1_000_000_000 + 100_000_000 * k for k in range(len(kitti.left_images))]
    images = {cam: [cv2.remap(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), *maps[cam], cv2.INTER_LINEAR)
                    for path in paths] for cam, paths in (("cam0", kitti.left_images), ("cam1", kitti.right_images))}
    assert kitti.T_cam0_cam is not None
    truth = []
    for stamp, T in zip(stamps, kitti.T_cam0_cam):
        x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
        truth.append(f"{stamp},{T[0, 3]},{T[1, 3]},{T[2, 3]},{w},{x},{y},{z}")
    return write_euroc(root, images, stamps, calibration, truth), kitti.baseline_m


@pytest.mark.skipif(not EXCERPT.is_dir(), reason="shared KITTI excerpt absent")
def test_a_distorted_rig_of_real_images_is_rectified_for_the_vo(tmp_path: Path) -> None:
    from mp_slam_ros.config import load_yaml
    from mp_slam_ros.pipelines.vo_config import VOConfig
    from mp_slam_ros.pipelines.vo_run import run_vo

    src, baseline = _distorted_rig_from_kitti(tmp_path / "kitti_as_euroc")
    assert main(["import", "euroc", str(src), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    with BagFrames(tmp_path / "out" / "bag") as bag:
        assert next(iter(bag)).camera.baseline_m == pytest.approx(baseline, rel=1e-3)
    preset = Path(__file__).resolve().parents[2] / "config" / "kitti_stereo.yaml"
    run = run_vo(tmp_path / "out" / "bag", load_yaml(preset, VOConfig))
    assert run.summary()["lost"] == 0
    evaluation = evaluate(read_tum(tmp_path / "out" / "groundtruth.tum"), run.trajectory(), "kitti as euroc", rpe=RpeSpec(10.0, "m"))
    assert evaluation.rpe_m.mean / 10.0 < 0.05  # drift below 5%, as the KITTI import's test
