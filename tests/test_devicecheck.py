"""The device check runs its code paths at toy sizes on the CPU, so it works when a GPU turns up."""
from course_lib import config
from tools import devicecheck


def test_devicecheck_runs_and_writes_a_table(tmp_path, one_thread):
    out = tmp_path / "check.md"
    status = devicecheck.main(["--profile", "smoke", "--device", "cpu", "--steps", "12", "--out", str(out)])
    text = out.read_text()
    assert status == 0 and "Failures: none" in text
    sizes = devicecheck.image_sizes(config.profile("smoke"))
    assert sizes == [(1, 16), (3, 16), (1, 32), (3, 32), (3, 64)]   # digits, photos, textures, MVTec, photos-64
    for preset in ("unet-tiny", "dit-ti4-d2"):           # one timing row per denoiser and image size
        for channels, side in sizes:
            assert f"| {preset} | {channels}x{side}x{side} | 16 |" in text
    assert "s/step fp32" in text and "noise ms/img" in text
