/**
 * Security for the PB server (riak_core_security's part in riak_api): who may log in (`Authenticator`) and what a
 * user may do (`Authorizer`), plus a default implementation of both backed by a users file of salted scrypt
 * password hashes and grants.
 *
 * Users file (JSON):
 *
 * ```json
 * {
 *   "users": {
 *     "alice": {
 *       "password": "scrypt$16384$8$1$<salt base64>$<hash base64>",
 *       "grants": [
 *         { "permission": "riak_kv.get", "type": "default", "bucket": "users" },
 *         { "permission": "riak_kv.list_keys", "type": "default" },
 *         { "permission": "*" }
 *       ]
 *     }
 *   }
 * }
 * ```
 *
 * A grant without `type` applies everywhere (riak's `any`), with `type` only to that bucket type (or a target
 * naming it), with `type` and `bucket` only to that bucket. `permission` `"*"` grants every permission.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs/promises"
import type * as NodeTls from "node:tls"
import type { PermissionCheck, Peer, Target } from "./PbService.js"

/**
 * A login attempt (`RpbAuthReq`, after the TLS handshake).
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthRequest {
  readonly user: string
  readonly password: string
  readonly peer: Peer
  /** The client certificate, when the TLS options asked for one and the client sent it. */
  readonly peerCertificate: NodeTls.PeerCertificate | undefined
}

/**
 * Checks logins.
 *
 * @since 0.1.0
 * @category tags
 */
export class Authenticator extends Context.Tag("@warren/pb/Authenticator")<Authenticator, {
  /** `true` when the user may log in with these credentials. */
  readonly authenticate: (request: AuthRequest) => Effect.Effect<boolean>
}>() {}

/**
 * Checks what an authenticated user may do, from the permission and target `decode` returned.
 *
 * @since 0.1.0
 * @category tags
 */
export class Authorizer extends Context.Tag("@warren/pb/Authorizer")<Authorizer, {
  readonly check: (user: string, check: PermissionCheck) => Effect.Effect<boolean>
}>() {}

// ---------------------------------------------------------------------------------------------------------------
// Users file
// ---------------------------------------------------------------------------------------------------------------

/**
 * A grant of the users file.
 *
 * @since 0.1.0
 * @category models
 */
export const Grant = Schema.Struct({
  permission: Schema.NonEmptyString,
  type: Schema.optional(Schema.String),
  bucket: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Grant = typeof Grant.Type

/**
 * A user of the users file: a password hash made by `hashPassword` and grants.
 *
 * @since 0.1.0
 * @category models
 */
export const User = Schema.Struct({
  password: Schema.String,
  grants: Schema.optionalWith(Schema.Array(Grant), { default: () => [] })
})

/**
 * @since 0.1.0
 * @category models
 */
export type User = typeof User.Type

/**
 * The users file.
 *
 * @since 0.1.0
 * @category models
 */
export const UsersFile = Schema.Struct({ users: Schema.Record({ key: Schema.String, value: User }) })

/**
 * @since 0.1.0
 * @category models
 */
export type UsersFile = typeof UsersFile.Type

/**
 * The users file could not be read or is not valid.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsersFileError extends Data.TaggedError("UsersFileError")<{
  readonly path: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `cannot load users file ${this.path}: ${String(this.cause)}`
  }
}

const scryptParams = { N: 16384, r: 8, p: 1 } as const
const keyLength = 32

const scrypt = (password: string, salt: Uint8Array, params: { N: number; r: number; p: number }) =>
  Effect.async<Buffer, Error>((resume) => {
    NodeCrypto.scrypt(password, salt, keyLength, { ...params, maxmem: 256 * params.N * params.r }, (error, key) => {
      resume(error === null ? Effect.succeed(key) : Effect.fail(error))
    })
  })

/**
 * Hashes a password for the users file: `scrypt$N$r$p$<salt base64>$<hash base64>` with a random 16-byte salt.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hashPassword = (password: string): Effect.Effect<string> =>
  Effect.gen(function*() {
    const salt = NodeCrypto.randomBytes(16)
    const hash = yield* Effect.orDie(scrypt(password, salt, scryptParams))
    const { N, p, r } = scryptParams
    return `scrypt$${N}$${r}$${p}$${salt.toString("base64")}$${hash.toString("base64")}`
  })

/**
 * `true` when `password` matches a hash made by `hashPassword` (constant-time comparison).
 *
 * @since 0.1.0
 * @category utils
 */
export const verifyPassword = (password: string, encoded: string): Effect.Effect<boolean> => {
  const parts = encoded.split("$")
  if (parts.length !== 6 || parts[0] !== "scrypt") return Effect.succeed(false)
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0)) return Effect.succeed(false)
  const salt = Buffer.from(parts[4]!, "base64")
  const expected = Buffer.from(parts[5]!, "base64")
  return scrypt(password, salt, { N, r, p }).pipe(
    Effect.map((hash) => hash.length === expected.length && NodeCrypto.timingSafeEqual(hash, expected)),
    Effect.orElseSucceed(() => false)
  )
}

const text = (value: string | Uint8Array): string =>
  typeof value === "string" ? value : Buffer.from(value).toString("utf8")

/**
 * Whether `grants` allow `check` (riak's grant matching: global grants apply to every target, type grants to the
 * type and its buckets, bucket grants to that bucket).
 *
 * @since 0.1.0
 * @category utils
 */
export const allows = (grants: ReadonlyArray<Grant>, check: PermissionCheck): boolean =>
  grants.some((grant) =>
    (grant.permission === "*" || grant.permission === check.permission) && grantCovers(grant, check.target)
  )

const grantCovers = (grant: Grant, target: Target | undefined): boolean => {
  if (grant.type === undefined) return true
  if (target === undefined) return false
  if (typeof target === "string" || target instanceof Uint8Array) {
    return grant.bucket === undefined && grant.type === text(target)
  }
  if (grant.type !== text(target.type)) return false
  return grant.bucket === undefined || grant.bucket === text(target.bucket)
}

// A hash of a random password, checked for unknown users so they take as long as known ones.
const decoyHash = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

/**
 * An `Authenticator` and an `Authorizer` over the given users.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUsers = (file: UsersFile): Layer.Layer<Authenticator | Authorizer> =>
  Layer.merge(
    Layer.succeed(Authenticator, {
      authenticate: (request) => {
        const user = Object.hasOwn(file.users, request.user) ? file.users[request.user] : undefined
        return user === undefined
          ? Effect.as(verifyPassword(request.password, decoyHash), false)
          : verifyPassword(request.password, user.password)
      }
    }),
    Layer.succeed(Authorizer, {
      check: (name, check) => {
        const user = Object.hasOwn(file.users, name) ? file.users[name] : undefined
        return Effect.succeed(user !== undefined && allows(user.grants, check))
      }
    })
  )

/**
 * Reads and validates a users file at `path`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loadUsersFile = (path: string): Effect.Effect<UsersFile, UsersFileError> =>
  Effect.tryPromise({ try: () => NodeFs.readFile(path, "utf8"), catch: (cause) => new UsersFileError({ path, cause }) })
    .pipe(
      Effect.flatMap((content) =>
        Schema.decodeUnknown(Schema.parseJson(UsersFile))(content).pipe(
          Effect.mapError((cause) => new UsersFileError({ path, cause }))
        )
      )
    )

/**
 * An `Authenticator` and an `Authorizer` over the users file at `path` (read once, when the layer is built).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUsersFile = (path: string): Layer.Layer<Authenticator | Authorizer, UsersFileError> =>
  Layer.unwrapEffect(Effect.map(loadUsersFile(path), layerUsers))
