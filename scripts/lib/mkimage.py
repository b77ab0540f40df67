#!/usr/bin/env python3
"""Assemble a single-layer OCI image archive from a root directory, with no registry and no
container engine: what `ctr images import` reads (oci-layout, index.json, blobs/sha256/*), the
full image name in the io.containerd.image.name annotation. Reproducible: owners 0:0 unless a
path is listed in --chown, mtimes 0, entries sorted.

usage: mkimage.py ROOTFS NAME OUT.tar [--entrypoint JSON] [--cmd JSON] [--env K=V]...
                  [--user UID:GID] [--workdir DIR] [--expose PORT/tcp]... [--chown PATH=UID:GID]...
"""
import argparse
import hashlib
import json
import os
import tarfile
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("rootfs")
ap.add_argument("name")
ap.add_argument("out")
ap.add_argument("--entrypoint")
ap.add_argument("--cmd")
ap.add_argument("--env", action="append", default=[])
ap.add_argument("--user", default="")
ap.add_argument("--workdir", default="/")
ap.add_argument("--expose", action="append", default=[])
ap.add_argument("--chown", action="append", default=[])
a = ap.parse_args()
owners = {}
for c in a.chown:
    path, ids = c.split("=", 1)
    uid, gid = ids.split(":")
    owners[path.strip("/")] = (int(uid), int(gid))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


out_dir = os.path.dirname(os.path.abspath(a.out))
layer = tempfile.NamedTemporaryFile(dir=out_dir, delete=False)
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    for dirpath, dirnames, filenames in os.walk(a.rootfs):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, n)
            arc = os.path.relpath(full, a.rootfs)
            ti = t.gettarinfo(full, arc)
            ti.uid, ti.gid = owners.get(arc, (0, 0))
            ti.uname = ti.gname = ""
            ti.mtime = 0
            if ti.isfile():
                with open(full, "rb") as f:
                    t.addfile(ti, f)
            else:
                t.addfile(ti)
layer.close()
layer_digest = sha256_file(layer.name)
layer_size = os.path.getsize(layer.name)

blobs = {}


def blob(data, media):
    d = hashlib.sha256(data).hexdigest()
    blobs[d] = data
    return {"mediaType": media, "digest": "sha256:" + d, "size": len(data)}


cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env,
       "WorkingDir": a.workdir}
if a.entrypoint:
    cfg["Entrypoint"] = json.loads(a.entrypoint)
if a.cmd:
    cfg["Cmd"] = json.loads(a.cmd)
if a.user:
    cfg["User"] = a.user
if a.expose:
    cfg["ExposedPorts"] = {p: {} for p in a.expose}
config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
          "config": cfg,
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]},
          "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/lib/mkimage.py"}]}
cdesc = blob(json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
ldesc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + layer_digest,
         "size": layer_size}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cdesc, "layers": [ldesc]}
mdesc = blob(json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
mdesc["annotations"] = {"io.containerd.image.name": a.name, "org.opencontainers.image.ref.name": tag}
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [mdesc]}

tmp_out = a.out + ".tmp"
with tarfile.open(tmp_out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        import io
        t.addfile(ti, io.BytesIO(data))
    add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    add("index.json", json.dumps(index).encode())
    for d, data in blobs.items():
        add("blobs/sha256/" + d, data)
    t.add(layer.name, "blobs/sha256/" + layer_digest)
os.unlink(layer.name)
os.replace(tmp_out, a.out)
print(a.name, mdesc["digest"], layer_size, "bytes layer")
