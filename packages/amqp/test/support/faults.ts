/**
 * Fault injection on the test broker, for integration tests (runs in test workers).
 *
 * - `stopApp` / `startApp`: a full AMQP outage without restarting the node (every connection drops, new
 *   connections are refused until `startApp`).
 * - `closeConnection(name)`: the broker closes one client connection (320 CONNECTION_FORCED); find it by the
 *   `connection_name` client property.
 * - `deleteQueue(name)`: the broker deletes a queue; its consumers get a server-side cancel.
 * - `withAdminChannel(f)`: a separate connection for declarations a test needs (e.g. deleting an exchange so
 *   that the next publish to it is a channel error, 404 NOT_FOUND, which closes that channel only).
 */
import amqp from "amqplib"
import { Data, Effect, Schedule } from "effect"
import { execFile } from "node:child_process"
import { inject } from "vitest"
import type { BrokerInfo } from "@warren/amqp/TestBroker"

/** A fault could not be injected (no rabbitmqctl for this broker, or the command failed). */
export class BrokerControlError extends Data.TaggedError("BrokerControlError")<{
  readonly command: string
  readonly output: string
}> {
  override get message() {
    return `rabbitmqctl ${this.command} failed: ${this.output}`
  }
}

/** The broker of this test run. */
export const broker = (): BrokerInfo => inject("broker")

/** The AMQP URL of the test broker. */
export const amqpUrl = (): string => broker().url

/** Runs `rabbitmqctl ARGS` against the test broker. */
export const rabbitmqctl = (...args: ReadonlyArray<string>): Effect.Effect<string, BrokerControlError> =>
  Effect.async<string, BrokerControlError>((resume) => {
    const info = broker()
    if (info.ctl === undefined) {
      resume(Effect.fail(
        new BrokerControlError({
          command: args.join(" "),
          output:
            "this broker came from AMQP_URL; set WARREN_RABBITMQCTL (e.g. \"docker compose exec -T rabbitmq rabbitmqctl\")"
        })
      ))
      return
    }
    const [cmd, ...prefix] = info.ctl
    const child = execFile(
      cmd!,
      [...prefix, ...args],
      { env: { ...process.env, ...info.ctlEnv }, encoding: "utf8", timeout: 30_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new BrokerControlError({ command: args.join(" "), output: `${stdout}${stderr}`.trim() }))
        )
    )
    return Effect.sync(() => child.kill())
  })

/** Stops the broker's AMQP application: every client connection drops and new ones are refused. */
export const stopApp: Effect.Effect<void, BrokerControlError> = Effect.asVoid(rabbitmqctl("stop_app"))

/** Starts the AMQP application again after `stopApp`. */
export const startApp: Effect.Effect<void, BrokerControlError> = Effect.asVoid(rabbitmqctl("start_app"))

interface ConnectionRow {
  readonly name: string
  readonly client_properties: ReadonlyArray<readonly [string, string, unknown]>
}

/** The broker's view of the client connections: peer name and `connection_name` client property. */
export const listConnections: Effect.Effect<
  ReadonlyArray<{ readonly name: string; readonly connectionName: string | undefined }>,
  BrokerControlError
> = rabbitmqctl("list_connections", "name", "client_properties", "--formatter", "json").pipe(
  Effect.map((out) => {
    const rows = (out.trim() === "" ? [] : JSON.parse(out)) as ReadonlyArray<ConnectionRow>
    return rows.map((row) => {
      const prop = row.client_properties.find(([key]) => key === "connection_name")
      return { name: row.name, connectionName: prop === undefined ? undefined : String(prop[2]) }
    })
  })
)

/**
 * Closes, from the broker side, the client connection(s) whose `connection_name` client property is `name`
 * (the client sees 320 CONNECTION_FORCED). Waits up to ~5 s for such a connection to exist; fails if none does.
 * Returns how many connections were closed.
 */
export const closeConnection = (
  name: string,
  reason = "closed by warren test"
): Effect.Effect<number, BrokerControlError> =>
  listConnections.pipe(
    Effect.map((rows) => rows.filter((row) => row.connectionName === name)),
    Effect.filterOrFail(
      (rows) => rows.length > 0,
      () => new BrokerControlError({ command: "close_connection", output: `no connection named ${name}` })
    ),
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.intersect(Schedule.recurs(50)))),
    Effect.flatMap((rows) =>
      // The JSON formatter prints Elixir pid syntax, which close_connection does not accept: take the
      // pid from the plain listing, matched by the connection's unique peer name.
      rabbitmqctl("list_connections", "name", "pid").pipe(
        Effect.map((plain) => {
          const pidByName = new Map(
            plain.split("\n").filter((line) => line.includes("\t")).map((line) => {
              const [peer, pid] = line.split("\t")
              return [peer!, pid!] as const
            })
          )
          return rows.flatMap((row) => pidByName.get(row.name) ?? [])
        }),
        Effect.flatMap((pids) =>
          Effect.forEach(pids, (pid) => rabbitmqctl("close_connection", pid, reason), { discard: true }).pipe(
            Effect.as(pids.length)
          )
        )
      )
    )
  )

/** Deletes a queue on the broker; its consumers receive a server-side cancel. */
export const deleteQueue = (name: string): Effect.Effect<void, BrokerControlError> =>
  Effect.asVoid(rabbitmqctl("delete_queue", name))

/** Runs `f` with a channel on a separate, short-lived admin connection to the test broker. */
export const withAdminChannel = <A>(f: (channel: amqp.Channel) => Promise<A>): Effect.Effect<A, Error> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: () => amqp.connect(amqpUrl(), { clientProperties: { connection_name: "warren-test-admin" } }),
      catch: (cause) => new Error(`admin connection failed: ${String(cause)}`)
    }),
    (connection) =>
      Effect.tryPromise({
        try: async () => {
          const channel = await connection.createChannel()
          try {
            return await f(channel)
          } finally {
            await channel.close().catch(() => undefined)
          }
        },
        catch: (cause) => cause instanceof Error ? cause : new Error(String(cause))
      }),
    (connection) => Effect.promise(() => connection.close().catch(() => undefined))
  )

/** The broker's channel count for the connection(s) whose `connection_name` is `name` (0 if there is none). */
export const brokerChannelCount = (name: string): Effect.Effect<number, BrokerControlError> =>
  rabbitmqctl("list_connections", "channels", "client_properties", "--formatter", "json").pipe(
    Effect.map((out) => {
      const rows = (out.trim() === "" ? [] : JSON.parse(out)) as ReadonlyArray<{
        readonly channels: number
        readonly client_properties: ReadonlyArray<readonly [string, string, unknown]>
      }>
      return rows
        .filter((row) => row.client_properties.some(([key, , value]) => key === "connection_name" && value === name))
        .reduce((sum, row) => sum + row.channels, 0)
    })
  )
