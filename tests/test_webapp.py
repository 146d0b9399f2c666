"""The clinic app: API responses (TestClient) and one end-to-end run in headless Chromium."""

import base64
import csv
import io
import json
import os
import re
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from braintriage.webapp import create_app
from conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium, synthetic_slice



def png_bytes(a: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(max_upload_mb=2))


def test_health_model_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    meta = client.get("/api/v1/model").json()
    assert meta["architecture"] and 0 < meta["threshold"] <= 1 and "history" not in meta
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "https://" not in docs.text
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert "/api/v1/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "not a diagnosis" in page.text and "https://" not in page.text


@pytest.mark.dataset
def test_predict_one_and_many_with_heatmaps(client, seed_data):
    # Real scans: the guard need not accept drawn test slices (session 18's refit flags them), and a flagged
    # scan gets no heat map.
    testing = seed_data / "Testing"
    scans = [testing / "glioma_tumor" / "image(1).jpg", testing / "no_tumor" / "image(1).jpg",
             testing / "no_tumor" / "image(10).jpg"]
    files = [("files", (f"scan{i}.jpg", p.read_bytes(), "image/jpeg")) for i, p in enumerate(scans)]
    r = client.post("/api/v1/predict", files=files[:1])
    assert r.status_code == 200
    one = r.json()["results"][0]
    assert one["filename"] == "scan0.jpg" and one["prediction"] in ("tumor", "no_tumor")
    assert 0 <= one["tumor_probability"] <= 1 and one["threshold"] > 0 and one["heatmap"] is None

    r = client.post("/api/v1/predict?heatmap=true", files=files)
    results = r.json()["results"]
    assert r.status_code == 200 and [x["filename"] for x in results] == ["scan0.jpg", "scan1.jpg", "scan2.jpg"]
    heat = Image.open(io.BytesIO(base64.b64decode(results[0]["heatmap"])))
    view = Image.open(io.BytesIO(base64.b64decode(results[0]["image"])))
    size = client.get("/api/v1/model").json()["input"]["preprocess"]["size"]  # the model's own input size
    assert heat.mode == "P" and "transparency" in heat.info and heat.size == view.size == (size, size)
    assert results[0]["predicted_type"] in ("no_tumor", "glioma", "meningioma", "pituitary")


def test_a_heat_map_png_shows_the_colours_of_the_map_itself():
    """The heat map travels as a palette PNG (one byte a pixel): decoded, it is the map coloured pixel by pixel by
    heatmap_rgba, each channel within 2 of 255, transparent where the evidence is weakest."""
    from braintriage.webapp import heatmap_png_base64, heatmap_rgba

    y, x = np.mgrid[0:160, 0:160]
    cam = np.exp(-((x - 60) ** 2 + (y - 90) ** 2) / 800).astype(np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(heatmap_png_base64(cam)))).convert("RGBA"))
    expected = heatmap_rgba(cam)
    assert decoded.shape == (160, 160, 4) and np.abs(decoded.astype(int) - expected).max() <= 2
    assert decoded[0, 0, 3] == 0 and decoded[90, 60, 3] == 255


def test_bad_files_get_422_alone_and_their_own_entry_in_a_batch(client):
    bad = ("files", ("notes.txt", b"this is not an image", "text/plain"))
    good = ("files", ("scan.jpg", png_bytes(synthetic_slice(128), "JPEG"), "image/jpeg"))
    truncated = ("files", ("cut.jpg", png_bytes(synthetic_slice(256), "JPEG")[:500], "image/jpeg"))
    r = client.post("/api/v1/predict", files=[bad])
    assert r.status_code == 422 and "not an image" in r.json()["results"][0]["error"]
    r = client.post("/api/v1/predict", files=[bad, good, truncated])
    assert r.status_code == 200
    errors = [x["error"] for x in r.json()["results"]]
    assert errors[0] and errors[1] is None and "truncated" in errors[2]
    assert client.post("/api/v1/predict").status_code == 422  # no files field at all


def test_oversize_upload_is_413_and_the_server_keeps_answering(client):
    big = ("files", ("big.png", os.urandom(3_000_000), "image/png"))
    r = client.post("/api/v1/predict", files=[big])
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit must stop the stream itself
        for _ in range(100):
            yield b"x" * 100_000

    r = client.post("/api/v1/predict", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_decompression_bomb_is_refused(client):
    # A tiny PNG whose header claims 20000 x 20000 pixels.
    bomb = png_bytes(np.zeros((20000, 20000), np.uint8)[:1, :1])
    im = Image.new("1", (20000, 20000))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000
    r = client.post("/api/v1/predict", files=[("files", ("bomb.png", buf.getvalue(), "image/png")),
                                             ("files", ("ok.png", bomb, "image/png"))])
    assert r.status_code == 200
    results = r.json()["results"]
    assert "too large" in results[0]["error"] and results[1]["error"] is None
    assert client.get("/healthz").status_code == 200


def running(app):
    """Serve `app` on a free local port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server():
    yield from running(create_app())


@pytest.mark.dataset
def one_scan_per_outcome(testing) -> dict:
    """One real scan of each outcome, as the bundled model reads them (the first in path order), so the test holds
    for whichever model ships: a glioma suspected above 99%, an uncertain scan, a clear normal, and a real scan the
    guard does not accept (with the session 18 model: meningioma_tumor/image(123).jpg, a bright background; the
    others glioma_tumor/image(1).jpg, glioma_tumor/image(10).jpg, no_tumor/image(1).jpg)."""
    from braintriage import verdicts
    from braintriage.inference import Predictor

    wanted = {"suspected": lambda path, r: (r.verdict == verdicts.TUMOR_SUSPECTED and r.shown_type == "glioma"
                                            and r.tumor_probability > 0.99),
              "uncertain": lambda path, r: r.verdict == verdicts.UNCERTAIN,
              "clear": lambda path, r: r.verdict == verdicts.NO_TUMOR_DETECTED and path.parent.name == "no_tumor",
              "cannot": lambda path, r: r.verdict == verdicts.CANNOT_ASSESS}
    paths = sorted(testing.rglob("*.jpg"))
    found = {}
    for path, result in zip(paths, Predictor().predict_files([str(p) for p in paths])):
        for outcome, matches in wanted.items():
            if outcome not in found and matches(path, result):
                found[outcome] = path
    assert set(found) == set(wanted), f"no Testing scan reads {sorted(set(wanted) - set(found))}"
    return {outcome: found[outcome] for outcome in wanted}


def test_clinician_uploads_a_real_scan_in_chromium(seed_data, live_server, tmp_path, bundled_model_id):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    scans = one_scan_per_outcome(seed_data / "Testing")
    uploads = {}
    for k, p in scans.items():  # three of them are called image(1).jpg: named by their outcome here
        uploads[k] = tmp_path / f"{k}.jpg"
        uploads[k].write_bytes(p.read_bytes())
    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("request", lambda req: requests.append(req.url))
        console_errors = []  # a Content-Security-Policy violation or a missing asset shows up here
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(live_server)
        expect(page.locator("#model-info")).to_contain_text("flags a scan", timeout=10_000)
        page.set_input_files("#files", [str(p) for p in uploads.values()])
        expect(page.locator("#status")).to_have_text(
            "4 scan(s) analysed: 1 tumor suspected, 1 could not be assessed, 1 uncertain, 1 clear.", timeout=30_000)
        cards = {k: page.locator(f'.card[aria-label="{k}.jpg"]') for k in scans}
        card = cards["suspected"]
        expect(card.locator(".verdict")).to_have_text("Tumor suspected: refer for specialist review")
        expect(card.locator(".probability")).to_have_text("High suspicion (> 99%)")  # never "100.0%"
        expect(card.locator(".type")).to_have_text("Likely type: glioma")
        expect(card.locator(".type")).to_have_attribute("title", re.compile("hint for the specialist, not a finding"))
        expect(cards["uncertain"].locator(".verdict")).to_have_text("Uncertain: needs a human read")
        expect(cards["uncertain"].locator(".type")).to_have_count(0)  # types only for suspected tumors
        expect(cards["clear"].locator(".verdict")).to_have_text("No tumor detected")
        expect(cards["clear"].locator(".caution")).to_have_text("A clear result does not rule out a tumor.")
        cannot = cards["cannot"]
        expect(cannot.locator(".verdict")).to_have_text("Could not be assessed: needs a human read")
        expect(cannot.locator(".probability")).to_contain_text("Model score, not to be relied on")
        expect(cannot.locator("button.heat-toggle")).to_have_count(0)  # no heat map for what was not assessed
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "clinic-app-outcomes.png"), full_page=True)
        page.click("#worklist")  # suspected, then cannot assess, then uncertain, then clear
        order = [page.locator(".card .verdict").nth(i).inner_text() for i in range(4)]
        assert order == ["Tumor suspected: refer for specialist review", "Could not be assessed: needs a human read",
                         "Uncertain: needs a human read", "No tumor detected"]
        page.screenshot(path=str(ARTIFACTS / "clinic-app-worklist.png"), full_page=True)
        with page.expect_download() as download:
            page.click("#export")
        exported = list(csv.DictReader(open(download.value.path())))
        assert {r["verdict"] for r in exported} == {"tumor_suspected", "cannot_assess", "uncertain",
                                                    "no_tumor_detected"}
        assert all(r["model"] == bundled_model_id and r["analysed_at"] for r in exported)
        card = page.locator(".card").first
        heat = card.locator("img.heat")
        expect(heat).to_be_hidden()
        toggle = card.locator("button.heat-toggle")
        toggle.focus()
        page.keyboard.press("Enter")  # keyboard usable
        expect(heat).to_be_visible()
        assert heat.evaluate("img => img.complete && img.naturalWidth") > 0  # the palette PNG decodes
        expect(toggle).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".heat-legend")).to_be_visible()  # what the colours mean
        page.locator("#heat-opacity").fill("30")
        assert heat.evaluate("img => img.style.opacity") == "0.3"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "clinic-app.png"), full_page=True)
        page.emulate_media(media="print")  # one summary per scan, each with the model, the time and the caution
        printed = page.locator(".card .print-only").first
        expect(printed).to_be_visible()
        expect(printed).to_contain_text("A clear result does not rule out a tumor.")
        expect(printed).to_contain_text(f"Model {bundled_model_id};")
        expect(page.locator(".card button").first).to_be_hidden()  # no buttons on paper
        page.screenshot(path=str(ARTIFACTS / "clinic-app-print.png"), full_page=True)
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": 390, "height": 844})  # a small phone
        page.screenshot(path=str(ARTIFACTS / "clinic-app-small.png"), full_page=True)
        page.set_viewport_size({"width": 1000, "height": 900})

        # A batch to review: the same file again is not sent twice; a filter; a compact table.
        page.set_input_files("#files", str(uploads["suspected"]))
        expect(page.locator("#status")).to_contain_text("1 file(s) already analysed: not sent again")
        expect(page.locator(".card")).to_have_count(4)
        page.click("#needs-review")
        expect(page.locator(".card")).to_have_count(3)  # the clear one is hidden
        page.click("#table-view")
        rows = page.locator("#results-table tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.first).to_contain_text("Tumor suspected")  # the worklist order holds in the table
        page.screenshot(path=str(ARTIFACTS / "clinic-app-table.png"), full_page=True)
        # Kept in this browser across a reload; Clear asks first, then forgets them here too.
        page.reload()
        expect(page.locator(".card")).to_have_count(4, timeout=10_000)
        expect(page.locator("#status")).to_contain_text("Kept from an earlier visit")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#clear")
        expect(page.locator(".card")).to_have_count(4)  # dismissed: nothing lost
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#clear")
        expect(page.locator(".card")).to_have_count(0)
        page.reload()
        expect(page.locator("#model-info")).to_contain_text("flags a scan", timeout=10_000)
        expect(page.locator("#results-section")).to_be_hidden()
        browser.close()
    assert all(u.startswith(live_server) or u.startswith("data:") or u.startswith("blob:") for u in requests)
    assert console_errors == []


def test_an_image_unlike_mri_gets_a_warning_instead_of_a_verdict(client):
    blank = ("files", ("blank.png", png_bytes(np.full((128, 128), 90, np.uint8)), "image/png"))
    r = client.post("/api/v1/predict", files=[blank])
    result = r.json()["results"][0]
    assert r.status_code == 200 and result["reliable"] is False and "blank" in result["warning"]


def test_uploads_stay_in_memory(client, monkeypatch):
    """Starlette spools large multipart parts to a temporary file; the app must keep scans in memory."""
    import tempfile

    def no_disk(self):  # what a spooled file does when it moves to disk
        raise AssertionError("an upload was written to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    rng = np.random.default_rng(0)
    big = png_bytes(rng.integers(0, 256, (1100, 1100)).astype(np.uint8))  # about 1.2 MB, over the 1 MB spool
    assert 1_000_000 < len(big) < 2_000_000
    r = client.post("/api/v1/predict", files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 200 and r.json()["results"][0]["error"] is None


def test_security_headers_on_every_answer_and_a_host_allow_list():
    from braintriage.webapp import PAGE_POLICY, default_allowed_hosts

    client = TestClient(create_app(max_upload_mb=2))
    for path in ("/", "/static/app.js", "/api/v1/model", "/healthz", "/docs"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert client.get("/").headers["content-security-policy"] == PAGE_POLICY  # no inline script on the page
    assert client.get("/api/v1/model").headers["cache-control"] == "no-store"
    too_big = client.post("/api/v1/predict", content=b"x" * 10, headers={"content-length": str(3_000_000)})
    assert too_big.status_code == 413 and too_big.headers["x-content-type-options"] == "nosniff"

    assert default_allowed_hosts("0.0.0.0") == ["127.0.0.1", "[::1]", "localhost"]
    guarded = TestClient(create_app(allowed_hosts=default_allowed_hosts("127.0.0.1")), base_url="http://localhost:8000")
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/healthz", headers={"host": "127.0.0.1:8000"}).status_code == 200
    rebound = guarded.get("/api/v1/model", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400 and "content-security-policy" in rebound.headers


def test_a_full_server_answers_503_and_a_request_past_its_budget_stops(monkeypatch):
    scan = ("files", ("scan.png", png_bytes(synthetic_slice(128)), "image/png"))
    full = TestClient(create_app(max_pending=0)).post("/api/v1/predict", files=[scan])
    assert full.status_code == 503 and full.headers["retry-after"] == "5"
    import braintriage.webapp as webapp

    monkeypatch.setattr(webapp, "TIME_BUDGET_SECONDS", -1.0)  # already past: nothing may start
    late = TestClient(create_app()).post("/api/v1/predict", files=[scan, scan])
    results = late.json()["results"]
    assert late.status_code == 422 and len(results) == 2
    assert all("not analysed" in r["error"] and r["tumor_probability"] is None for r in results)


def test_the_api_documentation_lets_a_user_try_predict_with_a_file(live_server, tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    scan = tmp_path / "scan.png"
    scan.write_bytes(png_bytes(synthetic_slice(160, seed=3, lesion=True)))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(live_server + "/docs")
        operation = page.locator("#operations-model-predict_api_v1_predict_post")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        picker = operation.locator('input[type="file"]')
        expect(picker).to_have_count(1, timeout=10_000)  # a file picker, not a text box
        picker.set_input_files(str(scan))
        operation.get_by_role("button", name="Execute").click()
        expect(operation.locator(".responses-wrapper .live-responses-table")).to_contain_text('"verdict"',
                                                                                                timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "api-docs-try-it.png"), full_page=False)
        browser.close()


def dicom_series(folder, slices: int = 4) -> list:
    """A DICOM series of `slices` 256x256 slices (a lesion on the third), described "AX T2 FLAIR"."""
    from pydicom.uid import generate_uid

    from test_scans import make_dicom, save

    series = generate_uid()
    paths = []
    for k in range(slices):
        ds = make_dicom(synthetic_slice(256, seed=k, lesion=k == 2).astype(np.uint16) * 15, series_uid=series,
                        instance=k + 1, position=float(k))
        ds.SeriesDescription = "AX T2 FLAIR"
        paths.append(save(ds, folder / f"IM{k + 1:04d}.dcm"))
    return paths


def test_a_study_comes_with_its_slices_description_and_identifiers_only_when_asked(tmp_path):
    from test_scans import assert_no_identifiers

    files = [("files", (os.path.basename(p), open(p, "rb").read(), "application/dicom"))
             for p in dicom_series(tmp_path)]
    client = TestClient(create_app())
    assert client.post("/api/v1/predict?heatmap=true", files=files).json()["results"][0]["slice_images"] is None
    r = client.post("/api/v1/predict?heatmap=true&views=true", files=files)
    study = r.json()["results"][0]
    assert r.status_code == 200 and study["slices"] == 4 and study["description"] == "AX T2 FLAIR"
    assert study["patient"] is None and study["study"].startswith("study-")
    pictures = ("image", "heatmap", "native_image", "slice_images")  # base64 may spell anything
    assert_no_identifiers(json.dumps({k: v for k, v in study.items() if k not in pictures}))  # nothing of the patient
    assert study["slice_labels"] == ["1", "2", "3", "4"] and study["shown_slice"] in study["slice_labels"]
    assert len(study["slice_images"]) == 4 and all(study["slice_images"])
    native = Image.open(io.BytesIO(base64.b64decode(study["native_image"])))
    assert native.size == (256, 256)  # its own resolution, not the model's 160 px

    shown = TestClient(create_app(show_identifiers=True)).post("/api/v1/predict", files=files).json()["results"][0]
    assert shown["patient"] == {"patient_name": "DOE^JANE", "patient_id": "PID-424242"}
    assert shown["study"].startswith("study-")  # the study name stays hashed: it goes into exports


def test_a_clinician_steps_through_a_study_and_identifiers_stay_on_screen(tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    from test_scans import assert_no_identifiers

    paths = dicom_series(tmp_path)
    server = running(create_app(show_identifiers=True))
    url = next(server)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            page.set_input_files("#files", paths)
            card = page.locator(".card").first
            expect(card.locator(".identifiers")).to_have_text("Patient: DOE^JANE, PID-424242", timeout=30_000)
            expect(card.locator(".study")).to_contain_text("AX T2 FLAIR")
            expect(card.locator(".study")).to_contain_text("slice shown:")
            card.locator("button.enlarge").click()
            viewer = page.locator("#viewer")
            expect(viewer).to_be_visible()
            expect(page.locator("#viewer-caption")).to_contain_text("the most suspicious, shown on the card")
            page.locator("#viewer-slice").fill("0")
            expect(page.locator("#viewer-caption")).to_contain_text("Slice 1 (1 of 4): P(tumor)")
            page.screenshot(path=str(ARTIFACTS / "clinic-app-study-viewer.png"), full_page=False)
            first = page.locator("#viewer-image").get_attribute("src")
            page.locator("#viewer-slice").fill("3")
            expect(page.locator("#viewer-caption")).to_contain_text("Slice 4 (4 of 4): P(tumor)")
            assert page.locator("#viewer-image").get_attribute("src") != first  # another slice's picture
            page.click("#viewer-close")
            expect(viewer).to_be_hidden()
            with page.expect_download() as download:
                page.click("#export")
            assert_no_identifiers(open(download.value.path()).read())  # never in an export
            assert_no_identifiers(page.evaluate("localStorage.getItem('braintriage.results.v1')") or "")
            browser.close()
    finally:
        next(server, None)


def test_a_stalled_upload_is_answered_408_and_does_not_hold_the_server():
    app = create_app(body_timeout=1.0)
    server = running(app)
    base = next(server)
    try:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                         b"boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n")  # then nothing more
            started = time.monotonic()
            answer = b""
            while b"stalled" not in answer:  # headers and body may arrive in separate segments
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode("latin-1")
            assert answer.startswith("HTTP/1.1 408") and "stalled" in answer, answer
            assert time.monotonic() - started < 5
        import httpx

        assert httpx.get(base + "/healthz", timeout=5).status_code == 200  # the server goes on
    finally:
        next(server, None)


def test_a_grey_picture_png_decodes_to_the_same_grey_levels():
    """The scan travels as a palette PNG whose palette is the grey ramp: decoded either way (its bytes, or
    converted to grey), it is the array that was sent."""
    from braintriage.webapp import png_base64

    scan = synthetic_slice(160, seed=4, lesion=True)
    decoded = Image.open(io.BytesIO(base64.b64decode(png_base64(scan))))
    assert decoded.size == (160, 160)
    assert (np.asarray(decoded) == scan).all() and (np.asarray(decoded.convert("L")) == scan).all()
    assert (np.asarray(decoded.convert("RGB"))[..., 1] == scan).all()
