import hashlib

from solvent.tiny import manifest, weights_dir


def test_shipped_weights_match_the_manifest():
    man = manifest()
    assert man["files"], "manifest lists no files"
    total = 0
    for f in man["files"]:
        data = (weights_dir() / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        total += len(data)
    assert total <= 25 * 1024 * 1024
