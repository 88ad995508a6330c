"""The checked GLB reader: accessors (strided, normalised, sparse), data URIs, node transforms."""

import base64
import json
import math
import struct

import numpy as np
import pytest

from stdgen.errors import InputError
from stdgen.io.gltf import load_glb, quaternion_matrix


def _glb(doc: dict, blob: bytes | None) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob is not None:
        blob += b"\0" * (-len(blob) % 4)
        body += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_strided_normalised_and_sparse_accessors():
    # Interleaved: (x, y, z float32, r, g, b, a uint8) per vertex = 16-byte stride.
    verts = [(1.0, 2.0, 3.0, 255, 0, 128, 255), (4.0, 5.0, 6.0, 0, 255, 64, 0)]
    inter = b"".join(struct.pack("<3f4B", *v) for v in verts)
    sparse_idx = struct.pack("<2H", 0, 1)
    sparse_val = struct.pack("<6f", 10, 20, 30, 40, 50, 60)
    blob = inter + sparse_idx + sparse_val
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(inter), "byteStride": 16},
            {"buffer": 0, "byteOffset": len(inter), "byteLength": 4},
            {"buffer": 0, "byteOffset": len(inter) + 4, "byteLength": 24},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 2, "type": "VEC3"},
            {"bufferView": 0, "byteOffset": 12, "componentType": 5121, "count": 2, "type": "VEC4", "normalized": True},
            # Sparse with no bufferView: zeros, then two replaced elements.
            {"componentType": 5126, "count": 3, "type": "VEC3",
             "sparse": {"count": 2, "indices": {"bufferView": 1, "componentType": 5123},
                        "values": {"bufferView": 2}}},
        ],
    }
    g = load_glb("t.glb", _glb(doc, blob))
    np.testing.assert_array_equal(g.accessor(0), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(g.accessor(1), [[1, 0, 128 / 255, 1], [0, 1, 64 / 255, 0]], atol=1e-7)
    np.testing.assert_array_equal(g.accessor(2), [[10, 20, 30], [40, 50, 60], [0, 0, 0]])
    doc["accessors"][0]["count"] = 3  # one stride more than the view holds
    with pytest.raises(InputError, match="accessor 0 reads"):
        load_glb("t.glb", _glb(doc, blob)).accessor(0)


def test_data_uri_buffer_and_node_transforms():
    data = struct.pack("<3f", 1, 0, 0)
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    half = math.sqrt(0.5)
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 12, "uri": uri}],
        "bufferViews": [{"buffer": 0, "byteLength": 12}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1, "type": "VEC3"}],
        "nodes": [
            {"children": [1], "translation": [0, 1, 0], "rotation": [0, half, 0, half]},  # 90 deg about +Y
            {"translation": [1, 0, 0], "scale": [2, 2, 2]},
        ],
        "scenes": [{"nodes": [0]}],
    }
    g = load_glb("t.glb", _glb(doc, None))
    np.testing.assert_array_equal(g.accessor(0), [[1, 0, 0]])
    world = g.world_matrices()
    # Child at parent(T R) * (1, 0, 0): +X turned 90 degrees about +Y is -Z.
    np.testing.assert_allclose(world[1][:3, 3], [0, 1, -1], atol=1e-12)
    np.testing.assert_allclose(world[1][:3, :3], 2 * quaternion_matrix([0, half, 0, half]), atol=1e-12)
    assert g.scene_nodes() == [0, 1]
    doc["nodes"][1]["children"] = [0]
    with pytest.raises(InputError, match="more than one parent|cycle"):
        load_glb("t.glb", _glb(doc, None)).parents()
    doc["nodes"] = [{"children": [1]}, {"children": [0]}]
    doc["scenes"] = [{"nodes": []}]
    with pytest.raises(InputError, match="cycle"):
        load_glb("t.glb", _glb(doc, None)).parents()
