/**
 * The conformance suite every `KvBackend` must pass: Riak's semantics through `KvStore.layerFromBackend`,
 * plus the backend's own compare-and-set contract. Run it from a test file of the backend:
 *
 * ```ts
 * conformance("EmbeddedBackend (memory)", (options) => EmbeddedBackend.layer(options))
 * ```
 *
 * `backend` must build an EMPTY backend each time its layer is built (every test builds it once), honour
 * the listing bounds it is given, and release everything when the layer's scope closes. Tests use the
 * live clock (so a database client's own timers work) and real concurrency.
 */
import { assert, describe, it } from "@effect/vitest"
import { KvBackend, KvStore } from "@warren/kv"
import { Chunk, Clock, Context, Effect, Layer, Option, Stream } from "effect"

/** Listing bounds the suite asks the backend for. */
export interface ConformanceOptions {
  readonly listBatchSize: number
  readonly listBatchBytes: number
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (
  b: Uint8Array | undefined
): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b))
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

const bucket = { bucket: enc("b") }
const at = (key: string, type?: string) =>
  type === undefined ? { bucket: enc("b"), key: enc(key) } : { type: enc(type), bucket: enc("b"), key: enc(key) }
const address = (key: string): KvBackend.Address => ({ type: enc("default"), bucket: enc("b"), key: enc(key) })

const collect = <E>(s: Stream.Stream<ReadonlyArray<Uint8Array>, E>) =>
  Effect.map(Stream.runCollect(s), (c) => Chunk.toReadonlyArray(c))

/** Runs the suite against `backend`. */
export const conformance = (
  name: string,
  backend: (options: ConformanceOptions) => Layer.Layer<KvBackend.KvBackend, unknown>
): void => {
  const defaults: ConformanceOptions = { listBatchSize: 1000, listBatchBytes: 64 * 1024 }

  /** The store and the backend under it, built in the test's scope. */
  const setup = (options: Partial<ConformanceOptions> = {}) =>
    Effect.map(
      Layer.build(KvStore.layerFromBackend.pipe(Layer.provideMerge(backend({ ...defaults, ...options })))),
      (context) => ({
        store: Context.get(context, KvStore.KvStore),
        backend: Context.get(context, KvBackend.KvBackend)
      })
    )

  const valueOf = (store: KvStore.KvStore["Type"], key: string) =>
    Effect.map(store.get(at(key)), Option.map((o) => dec(o.content.value)))

  describe(`${name}: KvBackend conformance`, () => {
    it.scopedLive("stores content and metadata; the server sets vtag and last-modified time", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const before = yield* Clock.currentTimeMillis
        const result = yield* store.put(bucket, enc("k"), {
          value: enc("hello"),
          contentType: enc("text/plain"),
          charset: enc("utf-8"),
          contentEncoding: enc("identity"),
          usermeta: [{ key: enc("m"), value: enc("1") }, { key: enc("flag") }],
          indexes: [{ key: enc("idx_bin"), value: enc("x") }],
          links: [{ bucket: enc("o"), key: enc("k2"), tag: enc("t") }]
        })
        const after = yield* Clock.currentTimeMillis
        assert.isFalse(result.generatedKey)
        assert.strictEqual(dec(result.key), "k")
        const object = Option.getOrThrow(yield* store.get(at("k")))
        assert.strictEqual(dec(object.content.value), "hello")
        assert.strictEqual(dec(object.content.contentType), "text/plain")
        assert.strictEqual(dec(object.content.charset), "utf-8")
        assert.strictEqual(dec(object.content.contentEncoding), "identity")
        assert.strictEqual(dec(object.content.usermeta?.[0]?.value), "1")
        assert.strictEqual(dec(object.content.usermeta?.[1]?.key), "flag")
        assert.isUndefined(object.content.usermeta?.[1]?.value)
        assert.strictEqual(dec(object.content.indexes?.[0]?.key), "idx_bin")
        assert.strictEqual(dec(object.content.links?.[0]?.tag), "t")
        const written = object.content.lastMod * 1000 + object.content.lastModUsecs / 1000
        assert.isAtLeast(written, Math.floor(before / 1000) * 1000)
        assert.isAtMost(written, after + 1)
        assert.isAbove(object.content.vtag.length, 0)
        assert.strictEqual(hex(object.vclock), hex(result.object.vclock))
        assert.strictEqual(hex(object.content.vtag), hex(result.object.content.vtag))
      }))

    it.scopedLive("not found is None; bucket types are separate; 'default' is the absent type", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        assert.isTrue(Option.isNone(yield* store.get(at("k"))))
        yield* store.put({ bucket: enc("b") }, enc("k"), { value: enc("default") })
        yield* store.put({ type: enc("other"), bucket: enc("b") }, enc("k"), { value: enc("other") })
        assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("default"))
        assert.strictEqual(dec(Option.getOrThrow(yield* store.get(at("k", "default"))).content.value), "default")
        assert.strictEqual(dec(Option.getOrThrow(yield* store.get(at("k", "other"))).content.value), "other")
        assert.isTrue(Option.isNone(yield* store.get(at("k", "third"))))
      }))

    it.scopedLive("binary names and values round-trip byte for byte", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const name = new Uint8Array([0, 255, 1, 0x80, 0])
        const value = new Uint8Array([0, 0, 255, 7])
        yield* store.put({ type: name, bucket: name }, name, { value })
        const got = Option.getOrThrow(yield* store.get({ type: name, bucket: name, key: name }))
        assert.deepStrictEqual([...got.content.value], [...value])
        assert.deepStrictEqual((yield* collect(store.listKeys({ type: name, bucket: name }))).flat().map(hex), [
          hex(name)
        ])
        assert.deepStrictEqual((yield* collect(store.listBuckets(name))).flat().map(hex), [hex(name)])
      }))

    it.scopedLive("every write gets a new vclock, also after delete and re-create", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const seen = new Set<string>()
        for (let i = 0; i < 3; i++) {
          seen.add(hex((yield* store.put(bucket, enc("k"), { value: enc(`v${i}`) })).object.vclock))
        }
        assert.isTrue(yield* store.delete(at("k")))
        seen.add(hex((yield* store.put(bucket, enc("k"), { value: enc("v0") })).object.vclock))
        assert.strictEqual(seen.size, 4)
      }))

    it.scopedLive("if_none_match fails with match_found when the key exists", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        yield* store.put(bucket, enc("k"), { value: enc("1") }, { _tag: "IfNoneMatch" })
        const second = yield* Effect.flip(store.put(bucket, enc("k"), { value: enc("2") }, { _tag: "IfNoneMatch" }))
        assert.strictEqual(second._tag, "PreconditionFailed")
        assert.strictEqual(second.message, "match_found")
        assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("1"))
      }))

    it.scopedLive("if_not_modified compares the vclock with the current one", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const missing = yield* Effect.flip(
          store.put(bucket, enc("k"), { value: enc("x") }, { _tag: "IfNotModified", vclock: undefined })
        )
        assert.strictEqual(missing.message, "notfound")
        const first = yield* store.put(bucket, enc("k"), { value: enc("1") })
        const second = yield* store.put(bucket, enc("k"), { value: enc("2") })
        const stale = yield* Effect.flip(
          store.put(bucket, enc("k"), { value: enc("3") }, { _tag: "IfNotModified", vclock: first.object.vclock })
        )
        assert.strictEqual(stale.message, "modified")
        const none = yield* Effect.flip(
          store.put(bucket, enc("k"), { value: enc("3") }, { _tag: "IfNotModified", vclock: undefined })
        )
        assert.strictEqual(none.message, "modified")
        yield* store.put(bucket, enc("k"), { value: enc("3") }, { _tag: "IfNotModified", vclock: second.object.vclock })
        assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("3"))
      }))

    it.scopedLive("concurrent conditional puts on one key: exactly one wins", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const created = yield* Effect.all(
          Array.from({ length: 32 }, (_, i) =>
            Effect.either(store.put(bucket, enc("race"), { value: enc(`c${i}`) }, { _tag: "IfNoneMatch" }))),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(
          created.filter((r) =>
            r._tag === "Right"
          ).length,
          1
        )
        const base = Option.getOrThrow(yield* store.get(at("race")))
        const updated = yield* Effect.all(
          Array.from({ length: 32 }, (_, i) =>
            Effect.either(
              store.put(bucket, enc("race"), { value: enc(`u${i}`) }, { _tag: "IfNotModified", vclock: base.vclock })
            )),
          { concurrency: "unbounded" }
        )
        const winners = updated.filter((r) => r._tag === "Right")
        assert.strictEqual(winners.length, 1)
        const final = Option.getOrThrow(yield* store.get(at("race")))
        assert.strictEqual(hex(final.vclock), hex(winners[0]!.right.object.vclock))
        // Unconditional puts all succeed; the last one applied is what a read sees.
        const all = yield* Effect.all(
          Array.from({ length: 32 }, (_, i) => store.put(bucket, enc("race"), { value: enc(`a${i}`) })),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(new Set(all.map((r) => hex(r.object.vclock))).size, 32)
        const last = Option.getOrThrow(yield* store.get(at("race")))
        assert.isTrue(all.some((r) => hex(r.object.vclock) === hex(last.vclock)))
      }))

    it.scopedLive("generates distinct base-62 keys when the put names none", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const keys = new Set<string>()
        for (let i = 0; i < 50; i++) {
          const r = yield* store.put(bucket, undefined, { value: enc(String(i)) })
          assert.isTrue(r.generatedKey)
          const key = dec(r.key) ?? ""
          assert.match(key, /^[0-9A-Za-z]{10,}$/)
          keys.add(key)
          assert.strictEqual(dec(Option.getOrThrow(yield* store.get(at(key))).content.value), String(i))
        }
        assert.strictEqual(keys.size, 50)
        assert.strictEqual((yield* store.usage).objects, 50)
      }))

    it.scopedLive("delete of a missing key succeeds; deleting the last key removes the bucket from listings", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        assert.isFalse(yield* store.delete(at("nope")))
        yield* store.put(bucket, enc("k"), { value: enc("v") })
        assert.strictEqual((yield* store.usage).objects, 1)
        assert.deepStrictEqual((yield* collect(store.listBuckets(undefined))).flat().map(dec), ["b"])
        assert.isTrue(yield* store.delete(at("k")))
        assert.isFalse(yield* store.delete(at("k")))
        assert.isTrue(Option.isNone(yield* store.get(at("k"))))
        assert.deepStrictEqual(yield* collect(store.listBuckets(undefined)), [])
        assert.deepStrictEqual(yield* collect(store.listKeys(bucket)), [])
        const usage = yield* store.usage
        assert.strictEqual(usage.objects, 0)
        assert.strictEqual(usage.bytes, 0)
      }))

    it.scopedLive("copies the caller's bytes", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const value = enc("abc")
        const key = enc("k")
        yield* store.put(bucket, key, { value })
        value[0] = 0x7a
        key[0] = 0x7a
        assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("abc"))
      }))

    it.scopedLive("lists keys in batches bounded by count and bytes, never empty", () =>
      Effect.gen(function*() {
        const { store } = yield* setup({ listBatchSize: 1000 })
        yield* Effect.forEach(
          Array.from({ length: 2500 }, (_, i) => i),
          (i) => store.put(bucket, enc(`key-${i}`), { value: enc("") }),
          { concurrency: 16, discard: true }
        )
        const batches = yield* collect(store.listKeys(bucket))
        assert.deepStrictEqual(batches.map((b) => b.length), [1000, 1000, 500])
        const all = new Set(batches.flat().map(dec))
        assert.strictEqual(all.size, 2500)
        assert.isTrue(all.has("key-0") && all.has("key-2499"))
        assert.deepStrictEqual(yield* collect(store.listKeys({ bucket: enc("missing") })), [])

        const small = (yield* setup({ listBatchBytes: 20 })).store
        for (const k of ["aaaaaaaa", "bbbbbbbb", "cccccccc", "d".repeat(50), "eeeeeeee"]) {
          yield* small.put(bucket, enc(k), { value: enc("") })
        }
        const smallBatches = yield* collect(small.listKeys(bucket))
        assert.deepStrictEqual(smallBatches.map((b) => b.map(dec)), [
          ["aaaaaaaa", "bbbbbbbb"],
          ["cccccccc"],
          ["d".repeat(50)],
          ["eeeeeeee"]
        ])
      }))

    it.scopedLive("lists buckets per type in bounded batches", () =>
      Effect.gen(function*() {
        const { store } = yield* setup({ listBatchSize: 2 })
        for (const b of ["b1", "b2", "b3"]) yield* store.put({ bucket: enc(b) }, enc("k"), { value: enc("") })
        yield* store.put({ bucket: enc("b1") }, enc("k2"), { value: enc("") })
        yield* store.put({ type: enc("t"), bucket: enc("tb") }, enc("k"), { value: enc("") })
        const defaults = yield* collect(store.listBuckets(undefined))
        assert.deepStrictEqual(defaults.map((b) => b.length), [2, 1])
        assert.deepStrictEqual(defaults.flat().map(dec).sort(), ["b1", "b2", "b3"])
        assert.strictEqual((yield* collect(store.listBuckets(enc("default")))).flat().length, 3)
        assert.deepStrictEqual((yield* collect(store.listBuckets(enc("t")))).flat().map(dec), ["tb"])
        assert.deepStrictEqual(yield* collect(store.listBuckets(enc("none"))), [])
      }))

    const values = (object: KvStore.KvObject) => KvStore.contents(object).map((c) => dec(c.value) ?? "").sort()
    const fetch = (store: KvStore.KvStore["Type"], key: string, type?: string) =>
      Effect.map(store.get(at(key, type)), Option.getOrThrow)
    const multi = { bucket: enc("b") }

    it.scopedLive("bucket properties: Riak's defaults per type, merged sets, refused invalid ones, reset", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const plain = yield* store.getBucketProps(multi)
        assert.strictEqual(plain.allowMult, false)
        assert.strictEqual(plain.lastWriteWins, false)
        assert.strictEqual(plain.nVal, 3)
        assert.strictEqual(plain.r, "quorum")
        assert.deepStrictEqual(yield* store.getBucketProps({ type: enc("default"), bucket: enc("b") }), plain)
        assert.strictEqual((yield* store.getBucketProps({ type: enc("maps"), bucket: enc("b") })).allowMult, true)

        yield* store.setBucketProps(multi, { allowMult: true })
        yield* store.setBucketProps(multi, { nVal: 5, r: 2 })
        const set = yield* store.getBucketProps(multi)
        assert.deepStrictEqual([set.allowMult, set.nVal, set.r, set.w], [true, 5, 2, "quorum"])
        assert.strictEqual((yield* store.getBucketProps({ bucket: enc("other") })).allowMult, false)

        const both = yield* Effect.flip(store.setBucketProps(multi, { lastWriteWins: true }))
        assert.strictEqual(both._tag, "InvalidBucketProps")
        const zero = yield* Effect.flip(store.setBucketProps(multi, { nVal: 0 }))
        assert.match(zero.message, /n_val/)
        assert.deepStrictEqual(yield* store.getBucketProps(multi), set)

        yield* store.resetBucketProps(multi)
        assert.deepStrictEqual(yield* store.getBucketProps(multi), plain)
      }))

    it.scopedLive("allow_mult: puts from the same stale vclock become siblings; a put with the fetched vclock resolves them", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        yield* store.setBucketProps(multi, { allowMult: true })
        const base = (yield* store.put(multi, enc("k"), { value: enc("base") })).object
        assert.strictEqual(KvStore.contents(base).length, 1)
        const first = yield* store.put(multi, enc("k"), { value: enc("a") }, undefined, base.vclock)
        assert.deepStrictEqual(values(first.object), ["a"])
        const second = yield* store.put(multi, enc("k"), { value: enc("b") }, undefined, base.vclock)
        // The reply (return_body) holds every sibling, the new one first.
        assert.deepStrictEqual(KvStore.contents(second.object).map((c) => dec(c.value)), ["b", "a"])
        const both = yield* fetch(store, "k")
        assert.deepStrictEqual(values(both), ["a", "b"])
        assert.strictEqual(dec(both.content.value), "b")
        assert.strictEqual(hex(both.vclock), hex(second.object.vclock))
        assert.notStrictEqual(hex(KvStore.contents(both)[0]!.vtag), hex(KvStore.contents(both)[1]!.vtag))

        const resolved = yield* store.put(multi, enc("k"), { value: enc("merged") }, undefined, both.vclock)
        assert.deepStrictEqual(values(resolved.object), ["merged"])
        assert.deepStrictEqual(values(yield* fetch(store, "k")), ["merged"])
        // A put with a vclock from before the resolution is concurrent with it.
        yield* store.put(multi, enc("k"), { value: enc("late") }, undefined, both.vclock)
        assert.deepStrictEqual(values(yield* fetch(store, "k")), ["late", "merged"])
      }))

    it.scopedLive("allow_mult: blind puts are siblings; every concurrent writer's value survives", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        yield* store.setBucketProps(multi, { allowMult: true })
        yield* store.put(multi, enc("blind"), { value: enc("1") })
        yield* store.put(multi, enc("blind"), { value: enc("2") })
        assert.deepStrictEqual(values(yield* fetch(store, "blind")), ["1", "2"])

        const base = (yield* store.put(multi, enc("race"), { value: enc("base") })).object
        const writers = 16
        yield* Effect.all(
          Array.from(
            { length: writers },
            (_, i) =>
              store.put(multi, enc("race"), { value: enc(`w${String(i).padStart(2, "0")}`) }, undefined, base.vclock)
          ),
          { concurrency: "unbounded" }
        )
        const all = yield* fetch(store, "race")
        assert.deepStrictEqual(values(all), Array.from({ length: writers }, (_, i) => `w${String(i).padStart(2, "0")}`))
        yield* store.put(multi, enc("race"), { value: enc("one") }, undefined, all.vclock)
        assert.deepStrictEqual(values(yield* fetch(store, "race")), ["one"])
      }))

    it.scopedLive("allow_mult false: a stale or missing vclock still replaces (one value); last_write_wins too", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        const base = (yield* store.put(bucket, enc("k"), { value: enc("base") })).object
        yield* store.put(bucket, enc("k"), { value: enc("a") }, undefined, base.vclock)
        yield* store.put(bucket, enc("k"), { value: enc("b") }, undefined, base.vclock)
        yield* store.put(bucket, enc("k"), { value: enc("c") })
        assert.deepStrictEqual(values(yield* fetch(store, "k")), ["c"])

        const typed = { type: enc("t"), bucket: enc("b") }
        yield* store.put(typed, enc("k"), { value: enc("1") })
        yield* store.put(typed, enc("k"), { value: enc("2") })
        assert.deepStrictEqual(values(yield* fetch(store, "k", "t")), ["1", "2"], "typed buckets keep siblings")
        yield* store.setBucketProps(typed, { allowMult: false, lastWriteWins: true })
        yield* store.put(typed, enc("k"), { value: enc("3") })
        assert.deepStrictEqual(values(yield* fetch(store, "k", "t")), ["3"])
      }))

    it.scopedLive("allow_mult: conditions, generated keys and deletes with siblings", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        yield* store.setBucketProps(multi, { allowMult: true })
        yield* store.put(multi, enc("k"), { value: enc("1") })
        const two = (yield* store.put(multi, enc("k"), { value: enc("2") })).object
        const taken = yield* Effect.flip(store.put(multi, enc("k"), { value: enc("x") }, { _tag: "IfNoneMatch" }))
        assert.strictEqual(taken.message, "match_found")
        const resolved = yield* store.put(multi, enc("k"), { value: enc("3") }, {
          _tag: "IfNotModified",
          vclock: two.vclock
        })
        assert.deepStrictEqual(values(resolved.object), ["3"], "if_not_modified's vclock is the put's context")
        const generated = yield* store.put(multi, undefined, { value: enc("g") })
        assert.deepStrictEqual(values(yield* fetch(store, dec(generated.key)!)), ["g"])

        // A delete with a vclock removes what it has seen and keeps a concurrent write.
        const seen = (yield* store.put(multi, enc("d"), { value: enc("seen") })).object
        yield* store.put(multi, enc("d"), { value: enc("concurrent") })
        assert.isTrue(yield* store.delete(at("d"), seen.vclock))
        const left = yield* fetch(store, "d")
        assert.deepStrictEqual(values(left), ["concurrent"])
        assert.notStrictEqual(hex(left.vclock), hex(seen.vclock))
        assert.isTrue(yield* store.delete(at("d"), left.vclock))
        assert.isTrue(Option.isNone(yield* store.get(at("d"))))
        // Without a vclock, a delete removes every sibling.
        yield* store.put(multi, enc("e"), { value: enc("1") })
        yield* store.put(multi, enc("e"), { value: enc("2") })
        assert.isTrue(yield* store.delete(at("e")))
        assert.isTrue(Option.isNone(yield* store.get(at("e"))))
        yield* store.put(multi, enc("e"), { value: enc("1") })
        assert.isTrue(yield* store.delete(at("e"), new Uint8Array(0)), "an empty vclock is none")
        assert.isTrue(Option.isNone(yield* store.get(at("e"))))
        assert.isFalse(yield* store.delete(at("e"), seen.vclock))
      }))

    it.scopedLive("allow_mult: at most 100 siblings (Riak's max_siblings); a resolving put still works", () =>
      Effect.gen(function*() {
        const { store } = yield* setup()
        yield* store.setBucketProps(multi, { allowMult: true })
        for (let i = 0; i < 100; i++) yield* store.put(multi, enc("k"), { value: enc(String(i)) })
        const full = yield* fetch(store, "k")
        assert.strictEqual(KvStore.contents(full).length, 100)
        const refused = yield* Effect.flip(store.put(multi, enc("k"), { value: enc("one too many") }))
        assert.strictEqual(refused._tag, "TooManySiblings")
        assert.match(refused.message, /^too_many_siblings/)
        assert.strictEqual(hex((yield* fetch(store, "k")).vclock), hex(full.vclock), "nothing changed")
        yield* store.put(multi, enc("k"), { value: enc("resolved") }, undefined, full.vclock)
        assert.deepStrictEqual(values(yield* fetch(store, "k")), ["resolved"])
      }))

    it.scopedLive("vclocks of the format before siblings are accepted as one dot", () =>
      Effect.gen(function*() {
        const { backend, store } = yield* setup()
        yield* store.setBucketProps(multi, { allowMult: true })
        const legacy = Uint8Array.from([0x77, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 42])
        const old: KvBackend.StoredObject = {
          vclock: legacy,
          content: { value: enc("old"), vtag: enc("t"), lastMod: 1, lastModUsecs: 0 }
        }
        assert.isTrue(yield* backend.compareAndSet(address("k"), Option.none(), Option.some(old)))
        yield* store.put(multi, enc("k"), { value: enc("new") }, undefined, legacy)
        assert.deepStrictEqual(values(yield* fetch(store, "k")), ["new"], "the legacy dot is covered")
        assert.isTrue(yield* backend.compareAndSet(address("j"), Option.none(), Option.some(old)))
        yield* store.put(multi, enc("j"), { value: enc("blind") })
        const both = yield* fetch(store, "j")
        assert.deepStrictEqual(values(both), ["blind", "old"])
        yield* store.put(multi, enc("j"), { value: enc("one") }, undefined, both.vclock)
        assert.deepStrictEqual(values(yield* fetch(store, "j")), ["one"])
      }))

    it.scopedLive("compareAndSet: expected absent, expected vclock, removal", () =>
      Effect.gen(function*() {
        const { backend } = yield* setup()
        const object = (v: string, vclock: string): KvBackend.StoredObject => ({
          vclock: enc(vclock),
          content: { value: enc(v), vtag: enc("t"), lastMod: 1, lastModUsecs: 2 }
        })
        assert.isTrue(yield* backend.compareAndSet(address("k"), Option.none(), Option.some(object("1", "vc1"))))
        assert.isFalse(yield* backend.compareAndSet(address("k"), Option.none(), Option.some(object("x", "vcx"))))
        assert.isFalse(
          yield* backend.compareAndSet(address("k"), Option.some(enc("vc0")), Option.some(object("x", "vcx")))
        )
        assert.isTrue(
          yield* backend.compareAndSet(address("k"), Option.some(enc("vc1")), Option.some(object("2", "vc2")))
        )
        const got = Option.getOrThrow(yield* backend.get(address("k")))
        assert.strictEqual(dec(got.content.value), "2")
        assert.strictEqual(dec(got.vclock), "vc2")
        assert.strictEqual(got.content.lastMod, 1)
        assert.strictEqual(got.content.lastModUsecs, 2)
        assert.isFalse(yield* backend.compareAndSet(address("k"), Option.some(enc("vc1")), Option.none()))
        assert.isTrue(yield* backend.compareAndSet(address("k"), Option.some(enc("vc2")), Option.none()))
        assert.isTrue(Option.isNone(yield* backend.get(address("k"))))
        assert.isFalse(yield* backend.compareAndSet(address("missing"), Option.some(enc("vc2")), Option.none()))
        assert.strictEqual((yield* backend.usage).objects, 0)
        yield* backend.checkpoint
      }))
  })
}
