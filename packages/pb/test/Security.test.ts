import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, type Duration, Effect, Either, Layer, Option, TestClock } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeTls from "node:tls"
import { PbServer, PbService, Security, ServiceRegistry } from "@warren/pb"
import type { PbTestClient } from "./utils/pbClient.js"
import { connect, encodeFrame, errorText } from "./utils/pbClient.js"
import { syncRegistration } from "./utils/services.js"

/** A self-signed certificate for localhost, made with the openssl CLI in a temporary directory. */
const makeCertificate = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-pb-tls-"))
    ChildProcess.execFileSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      NodePath.join(dir, "key.pem"),
      "-out",
      NodePath.join(dir, "cert.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost"
    ], { stdio: "ignore" })
    return {
      dir,
      key: NodeFs.readFileSync(NodePath.join(dir, "key.pem"), "utf8"),
      cert: NodeFs.readFileSync(NodePath.join(dir, "cert.pem"), "utf8")
    }
  }),
  ({ dir }) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

const authReq = (user: string, password: string): Buffer => {
  const u = Buffer.from(user)
  const p = Buffer.from(password)
  return Buffer.concat([Buffer.from([0x0a, u.length]), u, Buffer.from([0x12, p.length]), p])
}

/** Codes 160..161: needs `riak_kv.get` on default/<body>, or (body "") `riak_kv.stats` globally. */
const guarded = PbService.make({
  name: "guarded",
  init: () => undefined,
  decode: (_code, body) => {
    const bucket = Buffer.from(body).toString()
    return bucket === ""
      ? PbService.decoded(bucket, { permission: "riak_kv.stats" })
      : PbService.decoded(bucket, { permission: "riak_kv.get", target: { type: "default", bucket } })
  },
  encode: (reply: string) => Either.right(Buffer.concat([Uint8Array.of(161), Buffer.from(reply)])),
  process: (bucket, state) => PbService.reply(`ok ${bucket}`, state)
})

const startSecureServerWith = (authFailureDelay: Duration.DurationInput) =>
  Effect.gen(function*() {
    const certificate = yield* makeCertificate
    const usersPath = NodePath.join(certificate.dir, "users.json")
    const users: Security.UsersFile = {
      users: {
        alice: {
          password: yield* Security.hashPassword("s3cret"),
          grants: [{ permission: "riak_kv.get", type: "default", bucket: "users" }]
        }
      }
    }
    NodeFs.writeFileSync(usersPath, JSON.stringify(users))
    const registry = yield* ServiceRegistry.make
    yield* registry.registerAll([syncRegistration(), ServiceRegistry.registration(guarded, 160, 161)])
    const server = yield* PbServer.makeSecure({
      port: 0,
      security: {
        tls: { key: certificate.key, cert: certificate.cert },
        authFailureDelay
      }
    }).pipe(
      Effect.provideService(ServiceRegistry.ServiceRegistry, registry),
      Effect.provide(Security.layerUsersFile(usersPath))
    )
    return { port: server.address.port, certificate, server }
  })

const startSecureServer = startSecureServerWith("20 millis")

/** One turn of Node's event loop; no timer. */
const tick = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** STARTTLS, then the client side of the handshake on the same socket. */
const startTls = (client: PbTestClient, ca: string) =>
  Effect.gen(function*() {
    const ack = yield* client.request(255)
    assert.deepStrictEqual([ack.code, ack.body.length], [255, 0])
    const secure = yield* Effect.async<NodeTls.TLSSocket, Error>((resume) => {
      const socket = NodeTls.connect({ socket: client.socket, ca, servername: "localhost" }, () =>
        resume(Effect.succeed(socket)))
      socket.once("error", (error) =>
        resume(Effect.fail(error)))
    })
    assert.isTrue(secure.authorized)
    client.useSocket(secure)
  })

describe("Security", () => {
  it.scopedLive("STARTTLS, TLS on the same socket, login, permissions (end to end)", () =>
    Effect.gen(function*() {
      const { certificate, port, server } = yield* startSecureServer
      const client = yield* connect(port)
      assert.strictEqual(errorText(yield* client.request(101, "x")), "Security is enabled, please STARTTLS first")
      assert.strictEqual(
        errorText(yield* client.request(253, authReq("alice", "s3cret"))),
        "Security is enabled, please STARTTLS first"
      )
      yield* startTls(client, certificate.cert)
      assert.strictEqual(errorText(yield* client.request(101, "x")), "Security is enabled, please authenticate first")
      assert.strictEqual(errorText(yield* client.request(253, authReq("alice", "wrong"))), "Authentication failed")
      assert.strictEqual(errorText(yield* client.request(253, authReq("mallory", "s3cret"))), "Authentication failed")
      const ok = yield* client.request(253, authReq("alice", "s3cret"))
      assert.deepStrictEqual([ok.code, ok.body.length], [254, 0])
      assert.strictEqual((yield* client.request(101, "x")).body.toString(), "ok")
      const [info] = yield* server.connections
      assert.deepStrictEqual([info!.secure, info!.user], [true, "alice"])
      // permissions from decode's permission and target
      assert.strictEqual((yield* client.request(160, "users")).body.toString(), "ok users")
      assert.strictEqual(
        errorText(yield* client.request(160, "secret")),
        "Permission denied: User 'alice' does not have 'riak_kv.get' on default/secret"
      )
      assert.strictEqual(
        errorText(yield* client.request(160, "")),
        "Permission denied: User 'alice' does not have 'riak_kv.stats' on ANY"
      )
      // the connection stays open after a denial
      assert.strictEqual((yield* client.request(101, "x")).code, 102)
    }))

  it.scopedLive("replies before STARTTLS in the same write come first; TLS right after the ack", () =>
    Effect.gen(function*() {
      const { certificate, port } = yield* startSecureServer
      const client = yield* connect(port)
      yield* client.sendRaw(Buffer.concat([encodeFrame(101, "x"), encodeFrame(1)]))
      assert.strictEqual(errorText(yield* client.next), "Security is enabled, please STARTTLS first")
      assert.strictEqual(errorText(yield* client.next), "Security is enabled, please STARTTLS first")
      yield* startTls(client, certificate.cert)
      assert.strictEqual((yield* client.request(253, authReq("alice", "s3cret"))).code, 254)
      assert.strictEqual((yield* client.request(101, "x")).body.toString(), "ok")
    }))

  it.scopedLive("three consecutive failed logins close the connection", () =>
    Effect.gen(function*() {
      const { certificate, port } = yield* startSecureServer
      const client = yield* connect(port)
      yield* startTls(client, certificate.cert)
      for (let i = 0; i < 2; i++) {
        assert.strictEqual(errorText(yield* client.request(253, authReq("alice", "nope"))), "Authentication failed")
      }
      yield* client.send(253, authReq("alice", "nope"))
      const frames = yield* client.untilClosed
      assert.deepStrictEqual(frames.map(errorText), ["Authentication failed"])
    }))

  it.scoped("a failed login is answered after authFailureDelay, on Effect's clock (TestClock)", () =>
    Effect.gen(function*() {
      const { certificate, port } = yield* startSecureServerWith("3 seconds")
      const client = yield* connect(port)
      yield* startTls(client, certificate.cert)
      const now = yield* Clock.currentTimeMillis
      yield* client.send(253, authReq("alice", "nope"))
      // until the failure delay is sleeping
      while (!Chunk.some(yield* TestClock.sleeps(), (deadline) => deadline === now + 3000)) yield* tick
      const early = yield* Effect.raceFirst(
        Effect.map(client.next, Option.some),
        Effect.as(Effect.repeatN(tick, 20), Option.none())
      )
      assert.isTrue(Option.isNone(early))
      yield* TestClock.adjust("2 seconds")
      const later = yield* Effect.raceFirst(
        Effect.map(client.next, Option.some),
        Effect.as(Effect.repeatN(tick, 20), Option.none())
      )
      assert.isTrue(Option.isNone(later))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(errorText(yield* client.next), "Authentication failed")
    }))

  it.scopedLive("a success resets the count of failures", () =>
    Effect.gen(function*() {
      const { certificate, port } = yield* startSecureServer
      const client = yield* connect(port)
      yield* startTls(client, certificate.cert)
      assert.strictEqual(errorText(yield* client.request(253, authReq("alice", "nope"))), "Authentication failed")
      assert.strictEqual(errorText(yield* client.request(253, authReq("alice", "nope"))), "Authentication failed")
      assert.strictEqual((yield* client.request(253, authReq("alice", "s3cret"))).code, 254)
    }))

  it.scopedLive("a failed TLS handshake closes that connection only", () =>
    Effect.gen(function*() {
      const { certificate, port } = yield* startSecureServer
      const bad = yield* connect(port)
      assert.strictEqual((yield* bad.request(255)).code, 255)
      yield* bad.sendRaw(Buffer.from("this is not a TLS client hello, not at all\r\n"))
      yield* bad.untilClosed
      const good = yield* connect(port)
      yield* startTls(good, certificate.cert)
      assert.strictEqual((yield* good.request(253, authReq("alice", "s3cret"))).code, 254)
    }))

  it.scopedLive("security options without the security services are rejected", () =>
    Effect.gen(function*() {
      const registry = yield* ServiceRegistry.make
      const error = yield* Effect.flip(
        PbServer.make(
          { port: 0, security: { tls: { key: "k", cert: "c" } } } as unknown as PbServer.Options & {
            security?: undefined
          }
        ).pipe(
          Effect.provideService(ServiceRegistry.ServiceRegistry, registry)
        )
      )
      assert.strictEqual(error.reason, "Config")
      const tlsError = yield* Effect.flip(
        PbServer.makeSecure({ port: 0, security: { tls: { key: "not a key", cert: "not a cert" } } }).pipe(
          Effect.provideService(ServiceRegistry.ServiceRegistry, registry),
          Effect.provide(Security.layerUsers({ users: {} }))
        )
      )
      assert.strictEqual(tlsError.reason, "Tls")
    }))

  describe("users file", () => {
    it.effect("hashPassword / verifyPassword: salted, verifiable, wrong passwords rejected", () =>
      Effect.gen(function*() {
        const a = yield* Security.hashPassword("pw")
        const b = yield* Security.hashPassword("pw")
        assert.notStrictEqual(a, b)
        assert.match(a, /^scrypt\$16384\$8\$1\$/)
        assert.isTrue(yield* Security.verifyPassword("pw", a))
        assert.isFalse(yield* Security.verifyPassword("pW", a))
        assert.isFalse(yield* Security.verifyPassword("pw", "plain"))
        assert.isFalse(yield* Security.verifyPassword("pw", "scrypt$x$8$1$AA==$AA=="))
      }))

    it("grants: global, type, bucket; wildcard permission", () => {
      const grants: ReadonlyArray<Security.Grant> = [
        { permission: "riak_kv.get", type: "default", bucket: "users" },
        { permission: "riak_kv.put", type: "maps" },
        { permission: "riak_kv.stats" }
      ]
      const allows = (permission: string, target?: PbService.Target) =>
        Security.allows(grants, target === undefined ? { permission } : { permission, target })
      assert.isTrue(allows("riak_kv.get", { type: "default", bucket: "users" }))
      assert.isFalse(allows("riak_kv.get", { type: "default", bucket: "other" }))
      assert.isFalse(allows("riak_kv.get", "default"))
      assert.isFalse(allows("riak_kv.get"))
      assert.isTrue(allows("riak_kv.put", { type: "maps", bucket: "any-bucket" }))
      assert.isTrue(allows("riak_kv.put", "maps"))
      assert.isFalse(allows("riak_kv.put", { type: "default", bucket: "x" }))
      assert.isTrue(allows("riak_kv.stats"))
      assert.isTrue(allows("riak_kv.stats", { type: "t", bucket: Buffer.from("b") }))
      assert.isTrue(Security.allows([{ permission: "*" }], { permission: "anything" }))
    })

    it.effect("an invalid users file is a UsersFileError", () =>
      Effect.gen(function*() {
        const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-pb-users-"))
        const path = NodePath.join(dir, "users.json")
        NodeFs.writeFileSync(path, JSON.stringify({ users: { bob: { grants: [] } } }))
        const invalid = yield* Effect.flip(Security.loadUsersFile(path))
        const missing = yield* Effect.flip(Security.loadUsersFile(NodePath.join(dir, "missing.json")))
        NodeFs.rmSync(dir, { recursive: true })
        assert.strictEqual(invalid._tag, "UsersFileError")
        assert.strictEqual(missing._tag, "UsersFileError")
        const layerError = yield* Effect.flip(Layer.build(Security.layerUsersFile(path)).pipe(Effect.scoped))
        assert.strictEqual(layerError._tag, "UsersFileError")
      }))
  })
})
