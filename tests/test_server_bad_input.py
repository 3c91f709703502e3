"""Every bad input to `crossguard serve` gets a clear 4xx JSON error, and the server keeps serving:
corrupt/truncated/empty/huge images, odd image modes, bad text, bad JSON, bad base64, wrong content
types, missing lengths, oversized bodies, slow clients, a full connection pool."""
from __future__ import annotations

import io
import json
import socket
import time

import numpy as np
import pytest
from PIL import Image

from server_helpers import b64, healthy, parse_raw_response, png_bytes, raw_exchange, request, serve


@pytest.fixture(scope="module")
def server():
    with serve(max_body_bytes=4 * 1024 * 1024, max_text_chars=1000) as s:
        yield s


def _bomb_png() -> bytes:
    """A 9,000 x 9,000 1-bit PNG: ~10 KB on disk, 81 M pixels decoded (over the 40 M limit)."""
    buf = io.BytesIO()
    Image.new("1", (9000, 9000), 0).save(buf, "PNG")
    return buf.getvalue()


def _animated_gif(first_value: int, second_value: int) -> bytes:
    frames = [Image.new("L", (32, 32), first_value), Image.new("L", (32, 32), second_value)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _image(fmt: str, array=None, mode: str = "", fill=None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(array) if array is not None else Image.new(mode, (40, 40), fill)
    img.save(buf, fmt)
    return buf.getvalue()


def _sixteen_bit(bright: bool) -> bytes:
    """A 16-bit greyscale PNG, mostly near the top (bright) or bottom of its range, with one outlier."""
    arr = np.full((40, 40), 60000 if bright else 100, np.uint16)
    arr[0, 0] = 0 if bright else 65535
    return _image("PNG", arr)


BAD_JSON_CASES = [
    # (name, body bytes or dict, content type, expected status, expected code)
    ("corrupt image", {"text": "x", "image": b64(b"\x89PNG\r\n\x1a\nthis is not a png" * 10)}, None, 400, "invalid_image"),
    ("truncated image", {"text": "x", "image": b64(png_bytes(10, size=(300, 300))[:120])}, None, 400, "invalid_image"),
    ("truncated jpeg", {"text": "x", "image": b64(png_bytes(10, size=(300, 300), fmt="JPEG")[:400])}, None, 400, "invalid_image"),
    ("zero-size image", {"text": "x", "image": ""}, None, 400, "invalid_image"),
    ("decompression bomb", {"text": "x", "image": b64(_bomb_png())}, None, 413, "image_too_large"),
    ("image too many bytes", {"text": "x", "image": "A" * (5 * 1024 * 1024)}, None, 413, "body_too_large"),
    ("non-image data URL", {"text": "x", "image": "data:text/plain;base64,aGVsbG8="}, None, 415, "unsupported_media_type"),
    ("data URL without base64", {"text": "x", "image": "data:image/png,abc"}, None, 400, "bad_base64"),
    ("bad base64", {"text": "x", "image": "!!!not base64!!!"}, None, 400, "bad_base64"),
    ("bad base64 padding", {"text": "x", "image": "abcde"}, None, 400, "bad_base64"),
    ("huge text", {"text": "a" * 1001}, None, 413, "text_too_long"),
    ("empty text, no image", {"text": ""}, None, 400, "empty_request"),
    ("whitespace text, no image", {"text": "  \n "}, None, 400, "empty_request"),
    ("lone surrogate", b'{"text": "abc \\ud800 def"}', None, 400, "invalid_text"),
    ("invalid utf-8 json", b'{"text": "caf\xe9 \xff\xfe"}', None, 400, "invalid_json"),
    ("invalid json", b'{"text": "unterminated', None, 400, "invalid_json"),
    ("empty body", b"", None, 400, "invalid_json"),
    ("json array", [1, 2, 3], None, 400, "invalid_json"),
    ("json string", b'"just a string"', None, 400, "invalid_json"),
    ("json nested too deeply", b"[" * 200_000 + b"]" * 200_000, None, 400, "invalid_json"),
    ("duplicated key", b'{"text": "bomb", "text": "fine"}', None, 400, "duplicate_key"),
    ("duplicated key in another case", b'{"text": "bomb", "TEXT": "fine"}', None, 400, "duplicate_key"),
    ("text is a number", {"text": 42}, None, 400, "invalid_field"),
    ("text is null", {"text": None}, None, 400, "invalid_field"),
    ("image is a number", {"text": "x", "image": 7}, None, 400, "invalid_field"),
    ("image is an object", {"text": "x", "image": {"url": "http://x"}}, None, 400, "invalid_field"),
    ("missing text", {"image": b64(png_bytes())}, None, 400, "missing_field"),
    ("wrong content type", b"text=hello", "text/plain", 415, "unsupported_media_type"),
    ("form-urlencoded", b"text=hello", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("multipart without boundary", b"--x\r\n", "multipart/form-data", 400, "bad_multipart"),
    ("multipart truncated", b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nhello', "multipart/form-data; boundary=B", 400, "bad_multipart"),
    ("multipart missing text", b'--B\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--B--\r\n', "multipart/form-data; boundary=B", 400, "missing_field"),
    ("multipart invalid utf-8", b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\n\xff\xfe bad\r\n--B--\r\n', "multipart/form-data; boundary=B", 400, "invalid_text"),
    ("multipart empty image", b'--B\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\r\n--B--\r\n', "multipart/form-data; boundary=B", 400, "invalid_image"),
]


@pytest.mark.parametrize("name, body, ctype, status, code", BAD_JSON_CASES, ids=[c[0] for c in BAD_JSON_CASES])
def test_bad_input_is_a_clear_4xx(server, name, body, ctype, status, code):
    headers = {"Content-Type": ctype or "application/json"}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    got, resp_headers, out = request(server, "POST", "/v1/screen", body, headers)
    err = json.loads(out)["error"]
    assert (got, err["code"]) == (status, code), err
    assert err["message"] and resp_headers["content-type"] == "application/json"
    assert healthy(server)


@pytest.mark.parametrize("name, data, label", [
    ("animated gif uses its first frame", _animated_gif(5, 250), "unsafe"),
    ("animated gif, bright first frame", _animated_gif(250, 5), "safe"),
    ("cmyk jpeg, full black ink", _image("JPEG", mode="CMYK", fill=(0, 0, 0, 255)), "unsafe"),
    ("cmyk jpeg, no ink", _image("JPEG", mode="CMYK", fill=(0, 0, 0, 0)), "safe"),
    ("16-bit png, bright", _sixteen_bit(True), "safe"),
    ("16-bit png, dark", _sixteen_bit(False), "unsafe"),
    ("transparent black rgba composited on white", _image("PNG", np.zeros((40, 40, 4), np.uint8)), "safe"),
    ("opaque black rgba", _image("PNG", np.dstack([np.zeros((40, 40, 3), np.uint8), np.full((40, 40), 255, np.uint8)])), "unsafe"),
    ("palette png", png_bytes(5, mode="P"), "unsafe"),
    ("1x1 image", png_bytes(5, size=(1, 1)), "unsafe"),
])
def test_odd_images_are_screened(server, name, data, label):
    status, _, out = request(server, "POST", "/v1/screen", {"text": "what is this", "image": b64(data)})
    assert status == 200, out
    assert json.loads(out)["label"] == label


def test_method_and_route_errors(server):
    for method, path, status, code in [("GET", "/v1/screen", 405, "method_not_allowed"),
                                       ("GET", "/nope", 404, "not_found"),
                                       ("POST", "/v1/chat/completions", 404, "not_found")]:
        got, _, out = request(server, method, path, b"{}" if method == "POST" else None)
        assert (got, json.loads(out)["error"]["code"]) == (status, code)
    assert healthy(server)


def test_body_size_limit_answers_before_reading_the_body(server):
    raw = raw_exchange(server.port, b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 50000000\r\n\r\n{\"text\": ", timeout=3)
    status, body = parse_raw_response(raw)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert healthy(server)


@pytest.mark.parametrize("head, status, code", [
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n", 411, "length_required"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411, "length_required"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}", 400, "bad_request"),
    # two lengths: an upstream or another proxy could pick the other one (request smuggling)
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\n{}", 400, "bad_request"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 12\r\n\r\n{}", 400, "bad_request"),
    (b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}", 411, "length_required"),
    (b"GET /healthz/../../x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_path"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
    (b"GET /healthz HTTP/1.1\r\n" + b"X-Big: y\r\n" * 120 + b"\r\n", 431, "headers_too_large"),
])
def test_malformed_http_is_a_json_error(server, head, status, code):
    got, body = parse_raw_response(raw_exchange(server.port, head, timeout=3))
    assert (got, body["error"]["code"]) == (status, code)
    assert healthy(server)


def test_truncated_body_then_close(server):
    """The client promises 100 bytes, sends 10 and half-closes: 400 truncated_body, not a hang."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"text\": \"")
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        status, body = parse_raw_response(received)
    assert status == 400 and body["error"]["code"] == "truncated_body"
    assert healthy(server)


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_slow_client_is_cut_off(phase):
    """A slowloris client trickling bytes faster than the per-read timeout is still cut at the total
    header/body deadline (0.5 s here), gets 408 and frees its worker for others."""
    with serve(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=2) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            start = time.monotonic()
            head = b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
            if phase == "body":
                sock.sendall(head + b"\r\n")
                trickle = b'{"text": "' + b"a" * 80
            else:
                trickle = head
            received = b""
            for byte in trickle:  # one byte every 50 ms: each read succeeds, the total deadline does not
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.05)
                if time.monotonic() - start > 3:
                    break
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError:
                pass
            elapsed = time.monotonic() - start
        assert elapsed < 3.0
        status, body = parse_raw_response(received)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert healthy(s)


def test_idle_connections_are_closed():
    with serve(header_timeout_s=0.3, keepalive_timeout_s=0.3) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            start = time.monotonic()
            assert sock.recv(100) == b""  # the server closes an idle connection without a word
            assert time.monotonic() - start < 2.0


def test_full_pool_answers_503_then_recovers():
    with serve(max_connections=1, header_timeout_s=1.0) as s:
        hog = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        try:
            time.sleep(0.1)  # the hog holds the only worker, sending nothing
            status, headers, out = request(s, "GET", "/healthz")
            assert status == 503 and json.loads(out)["error"]["code"] == "busy" and headers["retry-after"] == "1"
        finally:
            hog.close()
        deadline = time.monotonic() + 3
        status = None  # the slot frees once the server sees the hog's EOF (and each client's close)
        while time.monotonic() < deadline and (status := request(s, "GET", "/healthz")[0]) != 200:
            time.sleep(0.05)
        assert status == 200


def test_many_bad_requests_in_a_row_do_not_leak_workers():
    """40 bad requests through 4 connection slots: a leaked slot would make every later request 503. On a busy
    machine a finished handler may hold its slot a moment longer, so a refused request is retried briefly."""
    def status_when_a_slot_is_free(body) -> int:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                status = request(s, "POST", "/v1/screen", body, {"Content-Type": "application/json"})[0]
            except (BrokenPipeError, ConnectionResetError):  # refused as busy before the body was sent
                status = 503
            if status != 503 or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    with serve(max_connections=4) as s:
        for i in range(40):
            assert status_when_a_slot_is_free(b"{bad json" if i % 2 else b"\xff") == 400
        assert healthy(s)


def test_expect_100_continue_over_the_limit_is_refused_before_the_body(server):
    raw = raw_exchange(server.port, b"POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Expect: 100-continue\r\nContent-Length: 50000000\r\n\r\n", timeout=3)
    assert not raw.startswith(b"HTTP/1.1 100")
    status, body = parse_raw_response(raw)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert healthy(server)


def test_good_clients_are_served_while_bad_ones_hammer():
    """Load from 4 well-behaved clients loses nothing while malformed requests arrive concurrently."""
    import threading

    from crossguard.benchmarks.server_load import run_load

    bad = [(b'{"text": "x", "image": "' + b64(b"GIF89a broken").encode() + b'"}', "application/json"),
           (b"{nope", "application/json"), (b"\xff\xfe", "application/json"), (b"hello", "text/plain"),
           (b'{"text": "' + b"a" * 2000 + b'"}', "application/json")]
    with serve(max_text_chars=1000, max_connections=16) as s:
        result = {}
        worker = threading.Thread(target=lambda: result.update(run_load(s.url, clients=4, requests=60, duration_s=20)))
        worker.start()
        statuses = [request(s, "POST", "/v1/screen", body, {"Content-Type": ctype})[0]
                    for _ in range(6) for body, ctype in bad]
        worker.join(30)
    assert all(400 <= st < 500 for st in statuses), statuses
    assert result["ok"] == 60 and result["errors"] == 0 and result["lost"] == 0
