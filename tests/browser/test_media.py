"""Audio, video and tables with image cells on the run page, in Chromium against a real
`labtrack ui`: the players load the real files (their duration comes from decoding them),
the step slider switches files, and a table cell holding an image shows its thumbnail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

import labtrack

from .conftest import Server, start_server, stop_server
from .helpers import wait_until


def _frames(step: int) -> np.ndarray:
    """16 frames of a square moving across a gradient (48x64)."""
    t = np.zeros((16, 48, 64, 3), np.uint8)
    t[..., 2] = np.linspace(40, 160, 64, dtype=np.uint8)[None, None, :]
    for i in range(16):
        x = 2 + i * 3
        t[i, 14:34, x:x + 14, 0] = 230
        t[i, 14:34, x:x + 14, 1] = 60 + 80 * step
    return t


@pytest.fixture(scope="module")
def media_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    base = tmp_path_factory.mktemp("media")
    root = base / "runs"
    rng = np.random.default_rng(0)
    with labtrack.Run(experiment="media", name="players", root=root, capture_git=False,
                      capture_console=False, _environ={}) as run:
        for step in range(2):
            sr = 16000
            t = np.arange(int(sr * (1.0 + step))) / sr  # 1 s, then 2 s: the slider changes the file
            digits = [np.kron(rng.integers(0, 256, size=(4, 4)), np.ones((6, 6))).astype(np.uint8) for _ in range(3)]
            run.log({
                "loss": 1.0 / (step + 1),
                "speech": labtrack.Audio(0.4 * np.sin(2 * np.pi * (330 + 110 * step) * t), sample_rate=sr,
                                         caption=f"tone {330 + 110 * step} Hz"),
                "rollout": labtrack.Video(_frames(step), fps=8, caption=f"episode {step}"),
                "predictions": labtrack.Table([[i, int(rng.integers(0, 10)), labtrack.Image(d)]
                                               for i, d in enumerate(digits)], columns=["id", "pred", "input"]),
            }, step=step)
        gif = base / "clip.gif"  # a GIF file copied in, as where no H.264 encoder is installed
        from PIL import Image

        first, *rest = [Image.fromarray(f) for f in _frames(0)[::2]]
        first.save(gif, save_all=True, append_images=rest, duration=250, loop=0)
        run.log_video("as_gif", gif, step=0)
        run.log_video("listed", [f for f in _frames(1)[::2]], fps=4, step=0)  # a list of frames: MP4
        run.log_image("anim", [f for f in _frames(1)[::4]], fps=2, step=0)  # an animation stays an image
        run.log({"report": labtrack.Html("<h3>report</h3><p>accuracy <b>0.93</b></p>")}, step=1)
        rid = run.id
    srv = start_server(root, base / "labtrack-ui.log")
    yield srv, rid
    stop_server(srv)


def test_audio_and_video_play_real_files_and_follow_the_step_slider(page: Any, media_run: tuple[Server, str],
                                                                    shot: Any) -> None:
    srv, rid = media_run
    bad: list[str] = []
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(srv.url + f"/#/run/{rid}?tab=images")
    expect(page.get_by_test_id("tab-images")).to_have_text("media6")  # label and count: an animation, 3 videos, audio, html
    audio = page.locator("[data-testid=audio-series][data-name=speech] audio")
    video = page.locator("[data-testid=video-series][data-name=rollout] video")
    expect(audio).to_have_count(1)
    expect(video).to_have_count(1)
    # duration comes from the decoded file: a broken or mistyped file leaves it NaN
    wait_until(lambda: abs((audio.evaluate("a => a.duration") or 0) - 2.0) < 0.01, 20,
               "the audio of the last step (2 s) did not load")
    wait_until(lambda: video.evaluate("v => v.readyState >= 1 && v.videoWidth") == 64, 20,
               "the video did not load")
    assert abs(video.evaluate("v => v.duration") - 2.0) < 0.2  # 16 frames at 8 fps
    assert video.evaluate("v => v.videoHeight") == 48
    # The browser can really decode and show frames, not only read the header.
    video.evaluate("v => { v.currentTime = 1.0; }")
    wait_until(lambda: video.evaluate("v => v.readyState >= 2"), 20, "the video has no frame to show")
    card = page.locator("[data-testid=audio-series][data-name=speech]")
    expect(card).to_contain_text("tone 440 Hz")
    expect(card).to_contain_text("16000 Hz")
    expect(page.locator("[data-testid=video-series][data-name=rollout]")).to_contain_text("16 frames")

    # The step slider switches both players to the files of step 0.
    card.get_by_test_id("audio-step").fill("0")
    wait_until(lambda: abs((audio.evaluate("a => a.duration") or 0) - 1.0) < 0.01, 20,
               "the audio of step 0 (1 s) did not load after moving the slider")
    expect(card).to_contain_text("tone 330 Hz")
    vcard = page.locator("[data-testid=video-series][data-name=rollout]")
    vcard.get_by_test_id("video-step").fill("0")
    expect(vcard).to_contain_text("episode 0")
    wait_until(lambda: "media/0/" in (video.evaluate("v => decodeURIComponent(v.currentSrc)") or "")
               and video.evaluate("v => v.readyState >= 1 && v.videoWidth") == 64, 20,
               "the video of step 0 did not load")

    # A GIF video (and an animation) shows as an image that decoded.
    gif = page.locator("[data-testid=video-series][data-name=as_gif] [data-testid=video-gif]")
    wait_until(lambda: gif.evaluate("i => i.complete && i.naturalWidth") == 64, 20, "the GIF video did not load")
    listed = page.locator("[data-testid=video-series][data-name=listed] video")
    wait_until(lambda: listed.evaluate("v => v.readyState >= 1 && v.duration") == 2.0, 20,
               "the video made from a list of frames did not load")
    frame = page.locator("[data-testid=html-series][data-name=report] iframe")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator("[data-testid=html-series][data-name=report] iframe").locator("b")).to_have_text("0.93")
    page.set_viewport_size({"width": 1440, "height": 1000})  # the whole media tab, without a re-layout mid-capture
    page.wait_for_timeout(300)  # let the sandboxed frame repaint at the new size
    shot(page, "run-media")
    assert not bad, bad


def test_table_cells_with_images_show_as_thumbnails(page: Any, media_run: tuple[Server, str], shot: Any) -> None:
    srv, rid = media_run
    page.goto(srv.url + f"/#/run/{rid}?tab=tables")
    card = page.locator(".media-card[data-name=predictions]")
    expect(card.locator("th")).to_have_text(["id", "pred", "input"])
    thumbs = card.get_by_test_id("table-thumb")
    expect(thumbs).to_have_count(3)
    for i in range(3):
        wait_until(lambda: thumbs.nth(i).evaluate("i => i.complete && i.naturalWidth") == 24, 20,
                   f"thumbnail {i} did not load")
    assert "media/1/predictions.cells/0-2.png" in thumbs.first.evaluate("i => decodeURIComponent(i.src)")
    # the path is not also printed as text
    expect(card.locator("td", has_text="predictions.cells")).to_have_count(0)
    shot(page, "run-table-thumbnails")
