import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import * as NodeTls from "node:tls"
import { Security } from "@warren/pb"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import { type PbServeArgs, pbServeProgram } from "../src/commands/pbServe.js"
import { runWarren } from "./support/warren.js"

const args = (overrides: Partial<PbServeArgs>): PbServeArgs => ({
  logFormat: "text",
  verbose: false,
  host: "127.0.0.1",
  port: 0,
  backlog: Option.none(),
  maxConnections: Option.none(),
  idleTimeout: Option.none(),
  streamTimeout: Option.none(),
  maxFrameSize: Option.none(),
  maxBufferedBytes: Option.none(),
  readBufferBytes: Option.none(),
  flushBytes: Option.none(),
  mailboxCapacity: Option.none(),
  closeTimeout: Option.none(),
  tlsCert: Option.none(),
  tlsKey: Option.none(),
  tlsCa: Option.none(),
  tlsPassphrase: Option.none(),
  tlsRequestCert: false,
  tlsRejectUnauthorized: false,
  tlsMinVersion: Option.none(),
  tlsCiphers: Option.none(),
  usersFile: Option.none(),
  authFailureDelay: Option.none(),
  maxAuthFailures: Option.none(),
  handshakeTimeout: Option.none(),
  dataFile: Option.none(),
  kvMaxBytes: Option.none(),
  sync: Option.none(),
  syncInterval: Option.none(),
  snapshotInterval: Option.none(),
  metricsPort: Option.none(),
  metricsHost: "127.0.0.1",
  ...overrides
})

/** Connects, sends ping (code 1, length 1) and server info (7), resolves with the reply codes. */
const pingAndInfo = (port: number) => exchange(port, Buffer.from([0, 0, 0, 1, 1, 0, 0, 0, 1, 7]), 2)

/** RpbPutReq { bucket: "b", key: "k", content: { value: "v" } } as a frame (code 11), encoded by hand. */
const putFrame = Buffer.from([0, 0, 0, 12, 11, 0x0a, 1, 0x62, 0x12, 1, 0x6b, 0x22, 3, 0x0a, 1, 0x76])

/** Connects, writes `frames`, resolves with the codes of the first `replies` reply frames. */
const exchange = (port: number, frames: Uint8Array, replies: number) =>
  Effect.async<ReadonlyArray<number>, Error>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    let buffer = Buffer.alloc(0)
    const codes: Array<number> = []
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      while (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
        codes.push(buffer[4]!)
        buffer = buffer.subarray(4 + buffer.readUInt32BE(0))
      }
      if (codes.length === replies) {
        socket.destroy()
        resume(Effect.succeed(codes))
      }
    })
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.write(frames)
  })

describe("warren pb serve", () => {
  it.live(
    "flags: usage errors name the flag and exit 2; --help lists every server option on stdout",
    () =>
      Effect.gen(function*() {
        const help = yield* runWarren(["pb", "serve", "--help"])
        assert.strictEqual(help.code, 0)
        for (
          const flag of [
            "--max-connections",
            "--idle-timeout",
            "--stream-timeout",
            "--max-frame-size",
            "--max-buffered-bytes",
            "--tls-cert",
            "--tls-key",
            "--tls-ca",
            "--users-file",
            "--sync",
            "--sync-interval",
            "--data-file",
            "--metrics-port"
          ]
        ) assert.include(help.stdout, flag)
        const badPort = yield* runWarren(["pb", "serve", "--port", "70000"])
        assert.strictEqual(badPort.code, 2)
        assert.strictEqual(badPort.stderr.trim(), "--port: expected an integer from 0 to 65535, got \"70000\"")
        const badSync = yield* runWarren(["pb", "serve", "--sync", "sometimes"])
        assert.strictEqual(badSync.code, 2)
        assert.match(badSync.stderr, /^--sync: expected one of always, interval, none/)
        const halfTls = yield* runWarren(["pb", "serve", "--port", "0", "--tls-cert", "package.json"])
        assert.strictEqual(halfTls.code, 2)
        assert.match(halfTls.stderr, /security needs --tls-cert, --tls-key and --users-file together/)
      }),
    300_000
  )

  it.live("the program serves the registered services on the real port, and stops when interrupted", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const fiber = yield* Effect.fork(
        pbServeProgram(args({}), (address) => Deferred.succeed(listening, address))
      )
      const address = yield* Deferred.await(listening)
      assert.strictEqual(address.host, "127.0.0.1")
      assert.isAbove(address.port, 0)
      assert.deepStrictEqual(yield* pingAndInfo(address.port), [2, 8])
      yield* Fiber.interrupt(fiber)
      const refused = yield* Effect.exit(pingAndInfo(address.port))
      assert.isTrue(Exit.isFailure(refused))
    }))

  it.live("a port in use is a failure naming the address and EADDRINUSE", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const first = yield* Effect.fork(pbServeProgram(args({}), (address) => Deferred.succeed(listening, address)))
      const { port } = yield* Deferred.await(listening)
      const second = yield* Effect.flip(pbServeProgram(args({ port })))
      assert.strictEqual(second._tag, "CliFailure")
      assert.strictEqual(second.message, `cannot listen on 127.0.0.1:${port}: the address is in use (EADDRINUSE)`)
      yield* Fiber.interrupt(first)
    }))

  it.live("--metrics-port: /metrics has the request counters after some requests, /healthz says ready", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const metricsAt = yield* Deferred.make<{ host: string; port: number }>()
      const fiber = yield* Effect.fork(pbServeProgram(
        args({ metricsPort: Option.some(0) }),
        (address) => Deferred.succeed(listening, address),
        (address) => Deferred.succeed(metricsAt, address)
      ))
      const address = yield* Deferred.await(listening)
      const metrics = yield* Deferred.await(metricsAt)
      const scrape = Effect.promise(async () => {
        const response = await fetch(`http://127.0.0.1:${metrics.port}/metrics`)
        return { type: response.headers.get("content-type"), body: await response.text() }
      })
      const count = (body: string, code: number) =>
        Number(new RegExp(`^warren_pb_requests\\{code="${code}"\\} (\\d+)$`, "m").exec(body)?.[1] ?? 0)
      const before = count((yield* scrape).body, 1)
      for (let i = 0; i < 3; i++) assert.deepStrictEqual(yield* pingAndInfo(address.port), [2, 8])
      const after = yield* scrape
      assert.strictEqual(after.type, "text/plain; version=0.0.4; charset=utf-8")
      assert.strictEqual(count(after.body, 1) - before, 3)
      assert.match(after.body, /^# TYPE warren_pb_requests counter$/m)
      assert.match(after.body, /^# TYPE warren_pb_request_duration_ms histogram$/m)
      assert.match(after.body, /^warren_pb_request_duration_ms_bucket\{le="\+Inf"\} \d+$/m)
      const health = yield* Effect.promise(async () => {
        const response = await fetch(`http://127.0.0.1:${metrics.port}/healthz`)
        return { status: response.status, body: await response.text() }
      })
      assert.deepStrictEqual(health, { status: 200, body: "ready\n" })
      yield* Fiber.interrupt(fiber)
    }))

  it.scopedLive("--tls-cert/--tls-key/--users-file: STARTTLS, then login, then requests", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-cli-tls-"))),
        (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
      )
      const key = NodePath.join(dir, "key.pem")
      const cert = NodePath.join(dir, "cert.pem")
      ChildProcess.execFileSync("openssl", [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=localhost"
      ], { stdio: "ignore" })
      const users = NodePath.join(dir, "users.json")
      const hash = yield* Security.hashPassword("s3cret")
      NodeFs.writeFileSync(
        users,
        JSON.stringify({ users: { alice: { password: hash, grants: [{ permission: "*" }] } } })
      )
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const fiber = yield* Effect.fork(pbServeProgram(
        args({
          tlsCert: Option.some(cert),
          tlsKey: Option.some(key),
          usersFile: Option.some(users),
          maxAuthFailures: Option.some(2)
        }),
        (address) => Deferred.succeed(listening, address)
      ))
      const { port } = yield* Deferred.await(listening)
      const codes = yield* Effect.promise(async () => {
        const plain = Net.connect({ port, host: "127.0.0.1" })
        await new Promise((resolve) => plain.once("connect", resolve))
        const read = (socket: Net.Socket) =>
          new Promise<number>((resolve) => {
            let buffer = Buffer.alloc(0)
            const onData = (chunk: Buffer) => {
              buffer = Buffer.concat([buffer, chunk])
              if (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
                socket.off("data", onData)
                resolve(buffer[4]!)
              }
            }
            socket.on("data", onData)
          })
        const frame = (code: number, body: Buffer = Buffer.alloc(0)) => {
          const header = Buffer.alloc(5)
          header.writeUInt32BE(body.length + 1, 0)
          header[4] = code
          return Buffer.concat([header, body])
        }
        const startTls = read(plain)
        plain.write(frame(255))
        const started = await startTls
        const secure = NodeTls.connect({ socket: plain, rejectUnauthorized: false, servername: "localhost" })
        await new Promise((resolve) => secure.once("secureConnect", resolve))
        const user = Buffer.from("alice")
        const password = Buffer.from("s3cret")
        const auth = read(secure)
        secure.write(
          frame(
            253,
            Buffer.concat([Buffer.from([0x0a, user.length]), user, Buffer.from([0x12, password.length]), password])
          )
        )
        const authed = await auth
        const ping = read(secure)
        secure.write(frame(1))
        const pong = await ping
        secure.destroy()
        return [started, authed, pong]
      })
      assert.deepStrictEqual(codes, [255, 254, 2])
      yield* Fiber.interrupt(fiber)
    }), 180_000)

  it.scopedLive("a damaged snapshot: one line on stderr, exit 1, no stack trace", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-damaged-"))),
        (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
      )
      const dataFile = NodePath.join(dir, "kv.snapshot")
      NodeFs.writeFileSync(dataFile, "this is not a snapshot")
      const result = yield* runWarren(["pb", "serve", "--port", "0", "--data-file", dataFile])
      assert.strictEqual(result.code, 1)
      assert.match(result.stderr, new RegExp(`^warren pb serve: the KV snapshot ${dataFile} is damaged`, "m"))
      assert.notMatch(result.stderr + result.stdout, /    at /)
    }), 180_000)

  // The command as a process: main.ts run from the sources by vite-node (with this project's vitest config, so
  // @warren/* resolve to their sources: no build needed), a signal, exit code 0.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it.scopedLive(
      `the command prints its address, serves, writes the snapshot and exits 0 on ${signal}`,
      () =>
        Effect.gen(function*() {
          const root = NodeUrl.fileURLToPath(new URL("../../../", import.meta.url))
          const dir = yield* Effect.acquireRelease(
            Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-pb-serve-"))),
            (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
          )
          const dataFile = NodePath.join(dir, "nested", "kv.snapshot")
          const child = yield* Effect.acquireRelease(
            Effect.sync(() =>
              ChildProcess.spawn(
                process.execPath,
                [
                  "node_modules/vite-node/vite-node.mjs",
                  "--config",
                  "packages/cli/vitest.config.ts",
                  "packages/cli/src/main.ts",
                  "pb",
                  "serve",
                  "--port",
                  "0",
                  "--data-file",
                  dataFile
                ],
                { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
              )
            ),
            (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
          )
          let stderr = ""
          child.stderr.on("data", (chunk) => (stderr += chunk))
          let stdout = ""
          const port = yield* Effect.async<number, Error>((resume) => {
            child.stdout.on("data", (chunk) => {
              stdout += chunk
              const match = /^listening on 127\.0\.0\.1:(\d+)$/m.exec(stdout)
              if (match) resume(Effect.succeed(Number(match[1])))
            })
            child.once("exit", (code) => resume(Effect.fail(new Error(`exited ${code} before listening: ${stderr}`))))
          })
          assert.deepStrictEqual(yield* pingAndInfo(port), [2, 8])
          assert.deepStrictEqual(yield* exchange(port, putFrame, 1), [12])
          const code = yield* Effect.async<number | null>((resume) => {
            child.once("exit", (code) => resume(Effect.succeed(code)))
            child.kill(signal)
          })
          assert.strictEqual(code, 0, stderr)
          assert.match(stdout, new RegExp(`^stopped 127\\.0\\.0\\.1:${port}$`, "m"))
          assert.isTrue(NodeFs.existsSync(dataFile), `the KV snapshot is written on stop: ${stdout} ${stderr}`)
        }),
      180_000
    )
  }
})
