import { assert, describe, it } from "@effect/vitest"
import type { Frame } from "../src/internal/frame.js"
import { FrameDecoder, OutBuffer } from "../src/internal/frame.js"
import { encodeFrame } from "./utils/pbClient.js"

const decodeAll = (decoder: FrameDecoder, chunks: ReadonlyArray<Uint8Array>) => {
  const out: Array<Frame> = []
  const problems = chunks.map((chunk) => decoder.push(chunk, out)).filter((p) => p !== undefined)
  return { frames: out.map((f) => [f.code, Buffer.from(f.body).toString()]), problems }
}

describe("framing", () => {
  const stream = Buffer.concat([
    encodeFrame(1),
    encodeFrame(101, "hello"),
    encodeFrame(7),
    encodeFrame(9, "x".repeat(300))
  ])
  const expected = [[1, ""], [101, "hello"], [7, ""], [9, "x".repeat(300)]]

  it("every split point of a byte stream gives the same frames", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      for (const second of [cut, Math.min(stream.length, cut + 3)]) {
        const chunks = [stream.subarray(0, cut), stream.subarray(cut, second), stream.subarray(second)]
        assert.deepStrictEqual(decodeAll(new FrameDecoder(1024), chunks).frames, expected, `cut at ${cut}/${second}`)
      }
    }
  })

  it("one byte at a time", () => {
    const chunks = Array.from(stream, (byte) => Uint8Array.of(byte))
    assert.deepStrictEqual(decodeAll(new FrameDecoder(1024), chunks).frames, expected)
  })

  it("an oversized length is reported from the header, before the body", () => {
    const decoder = new FrameDecoder(100)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(101)
    const result = decodeAll(decoder, [encodeFrame(1), header.subarray(0, 2), header.subarray(2)])
    assert.deepStrictEqual(result.frames, [[1, ""]])
    assert.deepStrictEqual(result.problems, [{ _tag: "Oversized", length: 101 }])
    assert.strictEqual(decoder.partialBytes, 0)
  })

  it("a partial frame holds what arrived, not what its header announced", () => {
    const decoder = new FrameDecoder(128 * 1024 * 1024)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(64 * 1024 * 1024)
    const before = process.memoryUsage().arrayBuffers
    const frames: Array<Frame> = []
    decoder.push(Buffer.concat([header, Buffer.from([9, 1, 2, 3])]), frames)
    const grown = process.memoryUsage().arrayBuffers - before
    assert.strictEqual(frames.length, 0)
    assert.strictEqual(decoder.partialBytes, 4)
    // The old decoder allocated the 64 MiB body here.
    assert.isBelow(grown, 1024 * 1024)
  })

  it("a large frame over pieces large and small is assembled in order", () => {
    const body = Buffer.alloc(300_000)
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff
    const stream = Buffer.concat([encodeFrame(9, body), encodeFrame(1)])
    const cuts = [3, 10, 5000, 5001, 5002, 70_000, 200_000, 200_003, 299_990]
    const chunks: Array<Uint8Array> = []
    let at = 0
    for (const cut of cuts) {
      chunks.push(stream.subarray(at, cut))
      at = cut
    }
    chunks.push(stream.subarray(at))
    const decoder = new FrameDecoder(1024 * 1024)
    const out: Array<Frame> = []
    for (const chunk of chunks) decoder.push(chunk, out)
    assert.strictEqual(out.length, 2)
    assert.strictEqual(out[0]!.code, 9)
    assert.isTrue(Buffer.from(out[0]!.body).equals(body))
    assert.strictEqual(out[1]!.code, 1)
    assert.strictEqual(decoder.partialBytes, 0)
  })

  it("a zero length is reported", () => {
    const result = decodeAll(new FrameDecoder(100), [Buffer.concat([encodeFrame(2), Buffer.alloc(4), encodeFrame(3)])])
    assert.deepStrictEqual(result.frames, [[2, ""]])
    assert.deepStrictEqual(result.problems, [{ _tag: "Empty" }])
  })

  it("a length above 2^31 is read unsigned", () => {
    const result = decodeAll(new FrameDecoder(100), [Uint8Array.of(0xff, 0xff, 0xff, 0xff)])
    assert.deepStrictEqual(result.problems, [{ _tag: "Oversized", length: 0xffffffff }])
  })

  it("OutBuffer frames replies in order, small ones coalesced, large ones not copied", () => {
    const out = new OutBuffer()
    const large = new Uint8Array(20_000).fill(5)
    out.push(Uint8Array.of(2))
    out.push(Uint8Array.of(102, 0x6f, 0x6b))
    out.push(large)
    out.push(Uint8Array.of(2))
    assert.strictEqual(out.size, 5 + 7 + 20_004 + 5)
    const pieces = out.take()
    assert.strictEqual(out.size, 0)
    assert.isTrue(pieces.includes(large))
    const all = Buffer.concat(pieces)
    assert.deepStrictEqual(decodeAll(new FrameDecoder(1 << 20), [all]).frames.map(([code]) => code), [2, 102, 5, 2])
    assert.isAtMost(pieces.length, 4)
  })

  it("OutBuffer takes replies given in pieces (riak's iodata), large pieces uncopied", () => {
    const out = new OutBuffer()
    const large = new Uint8Array(20_000).fill(7)
    assert.isTrue(out.push([Uint8Array.of(121), Buffer.from("ab"), Buffer.from("c")]))
    assert.isTrue(out.push([Uint8Array.of(122), large, Uint8Array.of(9)]))
    assert.isTrue(out.push(Uint8Array.of(2)))
    assert.isFalse(out.push([]))
    assert.isFalse(out.push(new Uint8Array(0)))
    assert.isFalse(out.push(["not bytes"] as unknown as ReadonlyArray<Uint8Array>))
    assert.strictEqual(out.size, 8 + 20_006 + 5)
    const pieces = out.take()
    assert.isTrue(pieces.includes(large))
    const frames = decodeAll(new FrameDecoder(1 << 20), [Buffer.concat(pieces)]).frames
    assert.deepStrictEqual(frames.map(([code]) => code), [121, 122, 2])
    assert.strictEqual(frames[0]![1], "abc")
    assert.strictEqual((frames[1]![1] as string).length, 20_001)
  })

  it("OutBuffer, take after take: each one byte-exact, tiny and mid-size replies alike", () => {
    const out = new OutBuffer()
    const replies = (round: number) =>
      Array.from({ length: 1 + (round % 5) }, (_, i) => {
        const size = [1, 3, 16, 17, 300][(round + i) % 5]!
        return Uint8Array.from({ length: size }, (_, j) => (round * 31 + i * 7 + j) & 0xff)
      })
    for (let round = 0; round < 12; round++) {
      const sent = replies(round)
      for (const reply of sent) assert.isTrue(out.push(reply))
      // one reply in two pieces, one of them tiny
      assert.isTrue(out.push([Uint8Array.of(200), Uint8Array.of(round)]))
      const taken = out.takeSmall()
      assert.isDefined(taken)
      assert.strictEqual(out.size, 0)
      const frames = decodeAll(new FrameDecoder(1 << 20), [taken!]).frames
      const expected = [...sent.map((r) => [r[0]!, Buffer.from(r.subarray(1)).toString()]), [
        200,
        Buffer.from([round]).toString()
      ]]
      assert.deepStrictEqual(frames, expected)
    }
    // a large reply is not taken as one buffer; `take` then gives it uncopied
    const large = new Uint8Array(20_000).fill(3)
    out.push(Uint8Array.of(2))
    out.push(large)
    assert.isUndefined(out.takeSmall())
    const pieces = out.take()
    assert.isTrue(pieces.includes(large))
    assert.strictEqual(out.size, 0)
    out.push(Uint8Array.of(2))
    assert.deepStrictEqual([...out.takeSmall()!], [0, 0, 0, 1, 2])
  })
})
