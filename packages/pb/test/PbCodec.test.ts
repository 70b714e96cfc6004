import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as NodeFs from "node:fs"
import * as NodeUrl from "node:url"
import { PbCodec, RiakPb } from "@warren/pb"

interface Messages {
  readonly RpbPingReq: {}
  readonly RpbErrorResp: RiakPb.RpbErrorResp
  readonly RpbGetServerInfoResp: RiakPb.RpbGetServerInfoResp
  readonly RpbPutReq: RiakPb.RpbPutReq
  readonly RpbListKeysResp: RiakPb.RpbListKeysResp
}

const codec = PbCodec.make<Messages>(RiakPb.schema(), {
  RpbPingReq: PbCodec.codeOnly(1),
  RpbErrorResp: 0,
  RpbGetServerInfoResp: 8,
  RpbPutReq: 11,
  RpbListKeysResp: 18
})

const bytes = (s: string) => new TextEncoder().encode(s)

describe("PbCodec", () => {
  it("codes and range", () => {
    assert.strictEqual(codec.codes.RpbPutReq, 11)
    assert.strictEqual(codec.minCode, 0)
    assert.strictEqual(codec.maxCode, 18)
  })

  it("code-only messages: no body on the wire", () => {
    assert.deepStrictEqual(codec.decode(1, new Uint8Array()), {
      _tag: "Decoded",
      message: { _tag: "RpbPingReq" },
      permission: undefined
    })
    assert.deepStrictEqual(codec.encode(codec.message("RpbPingReq", {})), Either.right(Uint8Array.of(1)))
  })

  it("proto2 required fields are always written, even when zero", () => {
    const encoded = codec.encode(codec.message("RpbErrorResp", { errmsg: bytes("no"), errcode: 0 }))
    // code 0, field 1 (bytes "no"), field 2 (varint 0)
    assert.deepStrictEqual(encoded, Either.right(Uint8Array.of(0, 0x0a, 2, 0x6e, 0x6f, 0x10, 0)))
  })

  it("a message missing a required field does not encode", () => {
    const invalid = { _tag: "RpbErrorResp", errmsg: bytes("no") } as unknown as PbCodec.AnyMessage<Messages>
    const encoded = codec.encode(invalid)
    assert.isTrue(Either.isLeft(encoded))
  })

  it("round trip with nested and repeated fields; field names as in the .proto", () => {
    const put = codec.message("RpbPutReq", {
      bucket: bytes("b"),
      key: bytes("k"),
      content: {
        value: bytes("v"),
        content_type: bytes("text/plain"),
        usermeta: [{ key: bytes("m"), value: bytes("1") }]
      },
      return_body: true
    })
    const encoded = Either.getOrThrow(codec.encode(put))
    assert.strictEqual(encoded[0], 11)
    const decoded = codec.decode(11, encoded.subarray(1))
    assert.strictEqual(decoded._tag, "Decoded")
    if (decoded._tag !== "Decoded" || decoded.message._tag !== "RpbPutReq") return assert.fail()
    const message = decoded.message
    assert.deepStrictEqual(Buffer.from(message.bucket).toString(), "b")
    assert.deepStrictEqual(Buffer.from(message.content.content_type!).toString(), "text/plain")
    assert.deepStrictEqual(Buffer.from(message.content.usermeta![0]!.value!).toString(), "1")
    assert.strictEqual(message.return_body, true)
    assert.isUndefined(message.vclock)
  })

  it("unknown fields are skipped", () => {
    // RpbGetServerInfoResp with node = "n", an unknown varint field 9 and an unknown bytes field 10
    const body = Uint8Array.of(0x0a, 1, 0x6e, 0x48, 0x96, 0x01, 0x52, 2, 1, 2)
    const decoded = codec.decode(8, body)
    if (decoded._tag !== "Decoded" || decoded.message._tag !== "RpbGetServerInfoResp") return assert.fail()
    assert.strictEqual(Buffer.from(decoded.message.node!).toString(), "n")
    assert.isUndefined(decoded.message.server_version)
  })

  it("decode failures: missing required field, truncated body, unknown code", () => {
    assert.deepStrictEqual(codec.decode(0, Uint8Array.of(0x10, 0))._tag, "DecodeFailed")
    assert.deepStrictEqual(codec.decode(8, Uint8Array.of(0x0a, 9, 1))._tag, "DecodeFailed")
    assert.deepStrictEqual(codec.decode(77, new Uint8Array())._tag, "DecodeFailed")
  })

  it("repeated fields decode to arrays, empty when absent", () => {
    const decoded = codec.decode(18, Uint8Array.of(0x10, 1))
    if (decoded._tag !== "Decoded" || decoded.message._tag !== "RpbListKeysResp") return assert.fail()
    assert.deepStrictEqual(decoded.message.keys, [])
    assert.strictEqual(decoded.message.done, true)
  })

  it("a bad table is a programming error found when the codec is built", () => {
    assert.throws(() => PbCodec.make<{ Nope: {} }>(RiakPb.schema(), { Nope: 3 }))
    assert.throws(() =>
      PbCodec.make<{ A: {}; B: {} }>(RiakPb.schema(), { A: PbCodec.codeOnly(3), B: PbCodec.codeOnly(3) })
    )
    assert.throws(() => PbCodec.make<{ A: {} }>(RiakPb.schema(), { A: PbCodec.codeOnly(256) }))
  })

  it("parseProto: schemas from source text", () => {
    const root = PbCodec.parseProto([
      "syntax = \"proto2\"; message Echo { required bytes text = 1; optional uint32 n_val = 2; }"
    ])
    const echo = PbCodec.make<{ Echo: { text: Uint8Array; n_val?: number } }>(root, { Echo: 200 })
    const encoded = Either.getOrThrow(echo.encode(echo.message("Echo", { text: bytes("hi"), n_val: 3 })))
    const decoded = echo.decode(200, encoded.subarray(1))
    assert.deepStrictEqual(decoded._tag === "Decoded" && decoded.message.n_val, 3)
  })

  it("the .proto files are found from the package root, so the same path works from dist/", () => {
    const packageRoot = new URL("../", import.meta.url)
    for (const file of RiakPb.protoFiles) {
      assert.isTrue(NodeFs.existsSync(file))
      const relative = NodeUrl.fileURLToPath(file).slice(NodeUrl.fileURLToPath(packageRoot).length)
      assert.match(relative, /^src\/proto\/riak(_kv)?\.proto$/)
      const fromDist = new URL(`../src/proto/${relative.split("/").pop()}`, new URL("dist/RiakPb.js", packageRoot))
      assert.strictEqual(fromDist.href, file.href)
    }
  })
})
