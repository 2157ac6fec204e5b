"""The dataset registry: names, resolution order, verified downloads from a loopback HTTP server, the CLI.

No test touches the internet: downloads come from an ``http.server`` on 127.0.0.1 (port 0) in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import shared_datasets_path, write_dataset
from emukg import cli
from emukg.data import registry
from emukg.data.registry import (
    SOURCE_FILE,
    dataset_cache_dir,
    download_dataset,
    find_registered,
    get_dataset,
    load_dataset,
    read_source_record,
    register_dataset,
    resolve_dataset,
)
from emukg.errors import EmukgError

REPO = Path(__file__).resolve().parents[1]
TINY = "emukg-test-tiny"


@pytest.fixture(scope="module", autouse=True)
def _acceptance_run():
    """Start the acceptance check as a real process when this module starts; the last test collects it."""
    shared = shared_datasets_path()
    if not shared.is_dir():
        yield f"reference datasets not found at {shared}; set EMUKG_DATA_DIR to the shared datasets folder to run this test"
        return
    env = dict(os.environ, EMUKG_DATA_DIR=str(shared),
               PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "emukg", "datasets", "info", "FB15k-237"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """A private cache, no data dir, no mirror, no proxies (urllib would send 127.0.0.1 to a proxy)."""
    monkeypatch.setenv("EMUKG_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("EMUKG_DATA_DIR", "EMUKG_MIRROR", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    return tmp_path / "cache"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> (base_url, requested_paths)``: a loopback HTTP server over ``folder``."""
    servers = []

    def start(folder: Path):
        requested: list[str] = []

        class Handler(_Handler):
            def do_GET(self):
                requested.append(self.path)
                super().do_GET()

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requested

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_registered(tiny_dataset):
    """The tiny dataset registered under ``emukg-test-tiny`` (folder ``tiny``) with its real checksums."""
    files = {p.name: _sha(p) for p in sorted(tiny_dataset.iterdir())}
    info = register_dataset(TINY, files, folder="tiny", entities=8, relations=3, triples=(16, 3, 3),
                            aliases=("TinyTest",), source="written by the test")
    yield info
    registry.unregister_dataset(TINY)


def _cache_is_empty(cache: Path) -> bool:
    return not (cache / "datasets").exists() or not any((cache / "datasets").iterdir())


# ---------------------------------------------------------------------------------------------- the names


def test_names_are_case_insensitive_with_aliases():
    for text in ("FB15k-237", "fb15k-237", "FB15K237", "fb237", "fb15k_237"):
        assert find_registered(text).name == "FB15k-237"
    assert find_registered("FB15K").name == "FB15k"
    assert find_registered("WN18RR").name == "wn18rr" and find_registered("wn18").name == "wn18"
    assert find_registered("kinship").name == "kinships"
    assert find_registered("Countries-S2").name == "countries_S2"
    assert find_registered("yago3_10").name == "YAGO3-10"
    assert find_registered("nope") is None


def test_unknown_name_suggests_close_matches():
    with pytest.raises(EmukgError) as info:
        get_dataset("fb15k-23")
    msg = str(info.value)
    assert "FB15k-237" in msg and "emukg datasets list" in msg
    with pytest.raises(EmukgError, match="did you mean.*umls"):
        resolve_dataset("umsl")


def test_builtin_registry_entries():
    names = [i.name for i in registry.list_datasets()]
    for name in ("wn18rr", "FB15k-237", "nations", "kinships", "umls", "countries_S1", "countries_S2",
                 "countries_S3", "YAGO3-10", "FB15k", "wn18"):
        assert name in names
    fb = get_dataset("FB15k-237")
    assert fb.verified and (fb.entities, fb.relations, fb.triples) == (14541, 237, (272115, 17535, 20466))
    assert {f.name: f.url for f in fb.files}["train.txt"] == (
        "https://raw.githubusercontent.com/DeepGraphLearning/KnowledgeGraphEmbedding/master/data/FB15k-237/train.txt")
    for name in ("YAGO3-10", "FB15k", "wn18"):
        info = get_dataset(name)
        assert not info.verified and all(f.url and f.sha256 is None for f in info.files)
    for name in ("nations", "kinships", "umls"):
        info = get_dataset(name)
        assert info.verified and all(f.url is None for f in info.files)
    assert registry.file_urls("kinships", "http://m.example/x/")["train.txt"] == "http://m.example/x/kinships/train.txt"


def test_register_dataset_validates():
    with pytest.raises(ValueError, match="SHA-256"):
        register_dataset("bad-sha", {"train.txt": "abc"})
    with pytest.raises(ValueError, match="relative path"):
        register_dataset("bad-path", {"../train.txt": None})
    with pytest.raises(ValueError, match="clashes"):
        register_dataset("fb-15k-237", {"train.txt": None})  # same key as FB15k-237
    first = register_dataset("emukg-test-a", {"train.txt": None})
    try:
        with pytest.raises(ValueError, match="clashes"):
            register_dataset("EMUKG_TEST_A", {"train.txt": None})
        second = register_dataset("EMUKG_TEST_A", {"train.txt": None}, replace=True)
        assert find_registered("emukg-test-a") is second and second is not first
    finally:
        registry.unregister_dataset("emukg-test-a")
    assert find_registered("emukg-test-a") is None and find_registered("FB15k-237").name == "FB15k-237"


def test_registry_checksums_match_the_manifest(shared_datasets):
    manifest = {}
    for line in (shared_datasets / "MANIFEST.sha256").read_text().splitlines():
        digest, path = line.split(None, 1)
        manifest[path.removeprefix("./")] = digest
    covered = set()
    for info in registry.list_datasets():
        if not info.verified:
            continue
        for f in info.files:
            key = f"{info.folder}/{f.name}"
            assert manifest.get(key) == f.sha256, key
            covered.add(key)
    assert covered == set(manifest)  # every reference file is registered


def test_registered_sizes_match_the_reference_copies(shared_datasets, monkeypatch):
    monkeypatch.setenv("EMUKG_DATA_DIR", str(shared_datasets))
    for info in registry.list_datasets():
        if not (shared_datasets / info.folder).is_dir() or info.name == "FB15k-237":
            continue  # FB15k-237 has its own test
        kg = load_dataset(info.name.upper(), download=False)
        assert kg.name == info.name
        assert (kg.num_entities, kg.num_relations) == (info.entities, info.relations), info.name
        assert tuple(kg.splits[s].shape[0] for s in ("train", "valid", "test")) == info.triples, info.name


def test_fb15k237_loads_with_the_published_counts(shared_datasets, monkeypatch):
    monkeypatch.setenv("EMUKG_DATA_DIR", str(shared_datasets))
    kg = load_dataset("fb15k-237", download=False)
    assert kg.name == "FB15k-237"
    assert (kg.num_entities, kg.num_relations) == (14541, 237)
    assert [kg.splits[s].shape[0] for s in ("train", "valid", "test")] == [272115, 17535, 20466]
    assert kg.unseen == {"valid": 9, "test": 28}  # kept, as LibKGE does
    assert kg.train_filter.triple_keys.numel() == 272115
    assert kg.filter.triple_keys.numel() == 272115 + 17535 + 20466


# --------------------------------------------------------------------------------------- resolution order


def test_resolution_order(tiny_registered, tiny_dataset, tmp_path, monkeypatch, serve):
    with pytest.raises(EmukgError, match=f"not available locally.*emukg datasets download {TINY}"):
        resolve_dataset(TINY)  # nothing anywhere, and no download allowed

    base, _ = serve(tiny_dataset.parent)
    cached = resolve_dataset("tinytest", download=True, mirror=base)  # 4. download into the cache
    assert cached == dataset_cache_dir() / TINY
    assert resolve_dataset(TINY) == cached  # 3. the cache

    data = tmp_path / "data"
    write_dataset(data / "TINY")  # folder name matched case-insensitively
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("EMUKG_DATA_DIR", os.pathsep.join([str(other), str(data)]))
    assert resolve_dataset(TINY) == data / "TINY"  # 2. the data dir wins over the cache

    explicit = write_dataset(tmp_path / "explicit")
    assert resolve_dataset(str(explicit)) == explicit  # 1. an existing path wins over everything
    assert resolve_dataset(explicit) == explicit


def test_data_dir_holds_unregistered_datasets_too(tmp_path, monkeypatch):
    write_dataset(tmp_path / "data" / "MyGraph")
    monkeypatch.setenv("EMUKG_DATA_DIR", str(tmp_path / "data"))
    kg = load_dataset("mygraph", download=False)
    assert kg.name == "MyGraph" and kg.num_entities == 8


def test_paths_that_do_not_exist_or_are_files(tmp_path):
    with pytest.raises(EmukgError, match="folder not found"):
        resolve_dataset(str(tmp_path / "missing"))
    f = tmp_path / "train.txt"
    f.write_text("a\tr\tb\n")
    with pytest.raises(EmukgError, match="is a file"):
        resolve_dataset(str(f))


# ------------------------------------------------------------------------------------------------ download


def test_download_verifies_and_stores(tiny_registered, tiny_dataset, serve, isolated_env):
    base, requested = serve(tiny_dataset.parent)
    path = download_dataset(TINY, mirror=base + "/")
    assert path == isolated_env / "datasets" / TINY
    for f in tiny_dataset.iterdir():
        assert (path / f.name).read_bytes() == f.read_bytes()
    assert sorted(requested) == sorted(f"/tiny/{f.name}" for f in tiny_dataset.iterdir())
    record = read_source_record(path)
    assert record["verified"] is True and record["mirror"] == base
    assert set(p.name for p in path.iterdir()) == {f.name for f in tiny_dataset.iterdir()} | {SOURCE_FILE}
    assert [p.name for p in (isolated_env / "datasets").iterdir()] == [TINY]  # no temporary leftovers

    n = len(requested)
    assert download_dataset(TINY, mirror=base) == path and len(requested) == n  # cached: no new request
    (path / "train.txt").write_text("tampered\n")
    download_dataset(TINY, mirror=base, force=True)
    assert (path / "train.txt").read_bytes() == (tiny_dataset / "train.txt").read_bytes()
    assert [p.name for p in (isolated_env / "datasets").iterdir()] == [TINY]


def test_mirror_from_environment_and_load_dataset_downloads(tiny_registered, tiny_dataset, serve, monkeypatch):
    base, requested = serve(tiny_dataset.parent)
    monkeypatch.setenv("EMUKG_MIRROR", base)
    kg = load_dataset(TINY)  # download=True by default
    assert requested and kg.name == TINY and kg.num_entities == 8


def test_local_folder_works_as_a_mirror(tiny_registered, tiny_dataset):
    path = download_dataset(TINY, mirror=str(tiny_dataset.parent))
    assert (path / "test.txt").read_bytes() == (tiny_dataset / "test.txt").read_bytes()


def test_corrupted_file_is_rejected_and_nothing_is_cached(tiny_registered, tiny_dataset, tmp_path, serve, isolated_env):
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_dataset, mirror / "tiny")
    bad = mirror / "tiny" / "valid.txt"
    bad.write_bytes(bad.read_bytes() + b"alice\tknows\tdave\n")
    base, _ = serve(mirror)
    expected = {f.name: f.sha256 for f in tiny_registered.files}["valid.txt"]
    with pytest.raises(EmukgError) as info:
        download_dataset(TINY, mirror=base)
    msg = str(info.value)
    assert "tiny/valid.txt" in msg and expected in msg and _sha(bad) in msg and "mismatch" in msg
    assert _cache_is_empty(isolated_env)
    with pytest.raises(EmukgError, match="not available locally"):
        resolve_dataset(TINY)


def test_missing_file_on_the_mirror(tiny_registered, tiny_dataset, tmp_path, serve, isolated_env):
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_dataset, mirror / "tiny")
    (mirror / "tiny" / "test.txt").unlink()
    base, _ = serve(mirror)
    with pytest.raises(EmukgError, match=r"tiny/test.txt: the server answered HTTP 404.*--mirror.*EMUKG_DATA_DIR"):
        download_dataset(TINY, mirror=base)
    assert _cache_is_empty(isolated_env)


def test_network_error_suggests_mirror_and_data_dir(tiny_registered, isolated_env):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EmukgError) as info:
        download_dataset(TINY, mirror=f"http://127.0.0.1:{port}", timeout=5)
    msg = str(info.value)
    assert "cannot download" in msg and "--mirror" in msg and "EMUKG_DATA_DIR" in msg
    assert _cache_is_empty(isolated_env)


def test_unverified_entries_need_no_verify(tiny_dataset, serve, isolated_env):
    files = {p.name: _sha(p) for p in tiny_dataset.iterdir()}
    files["train.txt"] = None
    register_dataset("emukg-test-unverified", files, folder="tiny")
    try:
        base, _ = serve(tiny_dataset.parent)
        with pytest.raises(EmukgError, match=r"unverified \(no SHA-256 registered for train.txt\).*--no-verify"):
            download_dataset("emukg-test-unverified", mirror=base)
        assert _cache_is_empty(isolated_env)
        path = download_dataset("emukg-test-unverified", mirror=base, verify=False)
        assert read_source_record(path)["verified"] is False
        assert read_source_record(path)["files"]["train.txt"]["sha256"] == _sha(tiny_dataset / "train.txt")
    finally:
        registry.unregister_dataset("emukg-test-unverified")


def test_mirror_only_dataset_without_mirror(isolated_env):
    with pytest.raises(EmukgError, match=r"no per-file public source.*--mirror URL.*<mirror>/umls/<file>"):
        download_dataset("umls")


def test_real_nations_from_a_loopback_mirror(shared_datasets, serve, isolated_env):
    base, _ = serve(shared_datasets)
    path = download_dataset("Nations", mirror=base)
    assert path == isolated_env / "datasets" / "nations"
    kg = load_dataset("nations", download=False)
    assert (kg.num_entities, kg.num_relations, kg.train.shape[0]) == (14, 55, 1592)
    assert (path / "literals.txt").is_file()


# -------------------------------------------------------------------------------------------------- the CLI


def test_cli_download_list_info_in_process(tiny_registered, tiny_dataset, serve, capsys, tmp_path, isolated_env):
    base, _ = serve(tiny_dataset.parent)
    assert cli.main(["datasets", "download", "tinytest", "--mirror", base]) == 0
    assert "downloaded and verified" in capsys.readouterr().out
    assert cli.main(["datasets", "download", TINY, "--mirror", base]) == 0
    assert "already in the cache" in capsys.readouterr().out

    assert cli.main(["datasets", "list", "--json", str(tmp_path / "list.json")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(TINY))
    assert "16 / 3 / 3" in row and str(isolated_env / "datasets" / TINY) in row
    records = {r["name"]: r for r in json.loads((tmp_path / "list.json").read_text())["datasets"]}
    assert records[TINY]["local_path"] == str(isolated_env / "datasets" / TINY)
    assert records["YAGO3-10"]["verified"] is False

    assert cli.main(["datasets", "info", TINY, "--json", str(tmp_path / "info.json")]) == 0
    out = capsys.readouterr().out
    assert "8 entities, 3 relations, 16 / 3 / 3 triples" in out
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["triples"] == {"train": 16, "valid": 3, "test": 3} and info["source"]["verified"] is True


def test_cli_corrupt_download_exits_2(tiny_registered, tiny_dataset, tmp_path, serve, capsys, isolated_env):
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_dataset, mirror / "tiny")
    (mirror / "tiny" / "entities.dict").write_text("0\tx\n")
    base, _ = serve(mirror)
    assert cli.main(["datasets", "download", TINY, "--mirror", base]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emukg: error: ") and "tiny/entities.dict" in err and "Traceback" not in err
    assert _cache_is_empty(isolated_env)


def test_cli_info_unknown_and_unavailable(capsys):
    assert cli.main(["datasets", "info", "fb15k-23"]) == 2
    assert "did you mean FB15k-237" in capsys.readouterr().err
    assert cli.main(["datasets", "info", "wn18rr"]) == 2
    assert "emukg datasets download wn18rr" in capsys.readouterr().err
    assert cli.main(["datasets", "download", "yago3-10"]) == 2
    assert "--no-verify" in capsys.readouterr().err


def test_acceptance_emukg_datasets_info_fb15k237(_acceptance_run):
    """``EMUKG_DATA_DIR=../shared/datasets emukg datasets info FB15k-237`` as a real process."""
    if isinstance(_acceptance_run, str):
        pytest.skip(_acceptance_run)
    out, err = _acceptance_run.communicate(timeout=300)
    assert _acceptance_run.returncode == 0, err
    assert "14541 entities, 237 relations, 272115 / 17535 / 20466 triples" in out
    assert "Traceback" not in err
