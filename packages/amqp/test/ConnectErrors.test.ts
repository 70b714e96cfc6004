/**
 * Connect errors a person can act on: a typed `AmqpConnectError` with a `reason` for each way a connect fails, a
 * WARN log per failed attempt with the reason and the next delay, no secret in any error or log, and TLS
 * (CA, client certificate and key, server name) against a private broker with throwaway certificates.
 */
import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect } from "@warren/amqp"
import { TestBroker } from "@warren/amqp/testing"
import { Effect, Exit, Layer, Logger, LogLevel } from "effect"
import * as net from "node:net"
import { amqpUrl } from "./support/faults.js"

/** The connect error of a connection that tries once (all its URLs) and gives up. */
const firstFailure = (options: AmqpConnection.ConnectionOptions) =>
  Effect.gen(function*() {
    const connection = yield* AmqpConnection.make({ reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0), ...options })
    const exit = yield* Effect.exit(connection.awaitConnected)
    assert.isTrue(Exit.isFailure(exit), "the connect must fail")
    const closed = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
    assert.strictEqual(closed?.reason, "Closed")
    const attempt = closed?.cause
    assert.instanceOf(attempt, AmqpConnection.AmqpError)
    const failure = (attempt as AmqpConnection.AmqpError).cause
    assert.instanceOf(failure, AmqpConnection.AmqpConnectError)
    return failure as AmqpConnection.AmqpConnectError
  })

/** A TCP server on a free port: `onSocket` decides what it does with each connection. Closed with the scope. */
const tcpServer = (onSocket: (socket: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ server: net.Server; sockets: Set<net.Socket>; port: number }>((resume) => {
      const sockets = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => undefined)
        onSocket(socket)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({ server, sockets, port: typeof address === "object" && address !== null ? address.port : 0 }))
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ port }) => port))

const brokerWith = (change: (url: URL) => void) => {
  const url = new URL(amqpUrl())
  change(url)
  return url.toString()
}

describe("AmqpConnection connect errors (real sockets, real broker)", () => {
  it.scopedLive("a refused port: reason Refused, URL redacted, and a WARN per attempt with the next delay", () =>
    Effect.gen(function*() {
      // a port that was listening a moment ago: nothing listens there once the server is closed
      const closedPort = yield* Effect.scoped(tcpServer(() => undefined))
      const logs: Array<{ level: LogLevel.LogLevel; text: string }> = []
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => {
          logs.push({ level: logLevel, text: Array.isArray(message) ? message.join(" ") : String(message) })
        })
      )
      const failure = yield* firstFailure({
        urls: `amqp://guest:s3cret@127.0.0.1:${closedPort}`,
        reconnect: Reconnect.limit(Reconnect.fromDelays(["20 millis"]), 1)
      }).pipe(Effect.provide(capture))
      assert.strictEqual(failure.reason, "Refused")
      assert.strictEqual(failure.url, `amqp://guest:***@127.0.0.1:${closedPort}`)
      assert.include(failure.message, `amqp://guest:***@127.0.0.1:${closedPort}`)
      assert.include(failure.message, "connection refused")
      const warnings = logs.filter((log) => log.level === LogLevel.Warning).map((log) => log.text)
      assert.strictEqual(warnings.length, 2, warnings.join("\n"))
      assert.match(warnings[0]!, /attempt 1 failed: AMQP connect to amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ failed \(Refused\).*next attempt in 20ms/)
      assert.match(warnings[1]!, /attempt 2 failed: .*\(Refused\).*giving up/)
      for (const log of logs) assert.notInclude(log.text, "s3cret")
    }))

  it.scopedLive("a wrong password: reason AccessRefused", () =>
    Effect.gen(function*() {
      const failure = yield* firstFailure({ urls: brokerWith((url) => { url.password = "wrong-s3cret" }) })
      assert.strictEqual(failure.reason, "AccessRefused")
      assert.include(failure.message, "check the user name and password")
      assert.notInclude(failure.message, "wrong-s3cret")
      assert.notInclude(failure.url, "wrong-s3cret")
    }))

  it.scopedLive("a missing virtual host: reason VhostNotFound, naming the vhost", () =>
    Effect.gen(function*() {
      const failure = yield* firstFailure({ urls: brokerWith((url) => { url.pathname = "/no-such-vhost" }) })
      assert.strictEqual(failure.reason, "VhostNotFound")
      assert.include(failure.message, "virtual host \"no-such-vhost\"")
    }))

  it.scopedLive("a port that accepts TCP but never answers: reason HandshakeTimeout", () =>
    Effect.gen(function*() {
      const port = yield* tcpServer(() => undefined)
      const failure = yield* firstFailure({ urls: `amqp://guest:s3cret@127.0.0.1:${port}`, connectTimeout: "300 millis" })
      assert.strictEqual(failure.reason, "HandshakeTimeout")
      assert.include(failure.message, "accepted a TCP connection but the handshake did not complete")
      assert.include(failure.message, "guest:***@")
    }))

  it.scopedLive("a peer that is not an AMQP broker: reason NotAmqp", () =>
    Effect.gen(function*() {
      const port = yield* tcpServer((socket) => {
        socket.once("data", () => socket.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
      })
      const failure = yield* firstFailure({ urls: `amqp://127.0.0.1:${port}` })
      assert.strictEqual(failure.reason, "NotAmqp")
      assert.include(failure.message, "does not speak AMQP")
    }))

  it.scopedLive("each URL of an attempt is named in the attempt's error; the cause is the last one's", () =>
    Effect.gen(function*() {
      const silent = yield* tcpServer(() => undefined)
      const wrong = brokerWith((url) => { url.password = "nope" })
      const connection = yield* AmqpConnection.make({
        urls: [`amqp://u:p@127.0.0.1:${silent}`, wrong],
        connectTimeout: "300 millis",
        reconnect: Reconnect.limit(Reconnect.defaultPolicy, 0)
      })
      const exit = yield* Effect.exit(connection.awaitConnected)
      const attempt = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error.cause : undefined
      assert.instanceOf(attempt, AmqpConnection.AmqpError)
      const error = attempt as AmqpConnection.AmqpError
      assert.match(error.message, /\(HandshakeTimeout\).*; .*\(AccessRefused\)/)
      assert.strictEqual((error.cause as AmqpConnection.AmqpConnectError).reason, "AccessRefused")
    }))
})

describe("AmqpConnection config errors never show a secret", () => {
  it.effect("an invalid URL with a password: the error shows it redacted", () =>
    Effect.gen(function*() {
      for (const urls of ["amqp://guest:s3cret@127.0.0.1:notaport", ["amqp://guest:s3cret@127.0.0.1:notaport"] as const]) {
        const exit = yield* Effect.exit(Layer.build(AmqpConnection.layer({ urls })).pipe(Effect.scoped))
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
        assert.strictEqual(error?.reason, "Config")
        assert.include(error?.message, "guest:***@127.0.0.1:notaport")
        assert.notInclude(String(error), "s3cret")
        assert.notInclude(JSON.stringify(error), "s3cret")
        assert.isUndefined(error?.cause, "the ParseError (which holds the raw value) is not kept")
      }
    }))

  it.effect("a malformed TLS key or passphrase is not shown", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        AmqpConnection.make({
          urls: "amqps://127.0.0.1",
          tls: { passphrase: 123456789 as unknown as string }
        }).pipe(Effect.scoped)
      )
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?.reason, "Config")
      assert.include(error?.message, "tls.passphrase: must be a string (value not shown)")
      assert.notInclude(error?.message, "123456789")
    }))

  it("redact: URLs, unparsable URLs, URLs without a password", () => {
    assert.strictEqual(AmqpConnection.redact("amqp://guest:s3cret@host:5672/vh"), "amqp://guest:***@host:5672/vh")
    assert.strictEqual(AmqpConnection.redact("amqp://guest:s3cret@host:notaport"), "amqp://guest:***@host:notaport")
    assert.strictEqual(AmqpConnection.redact("amqps://host"), "amqps://host")
    assert.strictEqual(AmqpConnection.redact("not a url"), "not a url")
  })
})

describe("AmqpConnection over TLS (private broker with throwaway certificates)", () => {
  const tlsBroker = TestBroker.makeWith({ tls: true }).pipe(
    Effect.map((info) => {
      assert.isDefined(info.tls, "the private broker has a TLS listener")
      return info.tls!
    })
  )

  it.scopedLive("amqps:// with CA, client certificate and key, and server name: connects and opens a channel", () =>
    Effect.gen(function*() {
      const tls = yield* tlsBroker
      const connection = yield* AmqpConnection.make({
        urls: tls.url,
        tls: { ca: tls.ca, cert: tls.clientCert, key: Buffer.from(tls.clientKey), servername: tls.servername }
      })
      yield* connection.awaitConnected
      const channel = yield* connection.openChannel()
      yield* Effect.promise(() => channel.checkExchange("amq.direct"))

      // Each TLS setting matters: without it the same broker refuses, with reason Tls.
      const without = (label: string, tlsOptions: AmqpConnection.TlsOptions, pattern: RegExp) =>
        firstFailure({ urls: tls.url, tls: tlsOptions }).pipe(
          Effect.tap((failure) => {
            assert.strictEqual(failure.reason, "Tls", label)
            assert.match(failure.message, pattern, label)
          })
        )
      yield* without("no CA", { cert: tls.clientCert, key: tls.clientKey, servername: tls.servername }, /self-signed/i)
      yield* without("no server name", { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey }, /altnames/)
      yield* without("no client certificate", { ca: tls.ca, servername: tls.servername }, /certificate required/)
    }), { timeout: 120_000 })
})
