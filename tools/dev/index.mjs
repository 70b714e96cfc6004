/**
 * The ESLint configuration of the repository, built here because typescript-eslint must resolve TypeScript 5
 * (installed in this workspace); the root `eslint.config.mjs` only re-exports it.
 */
import tseslint from "typescript-eslint"

/** Source, test, bench and example files of the whole tree. */
const typescriptFiles = ["**/*.ts", "**/*.mts"]

export default tseslint.config(
  {
    ignores: [
      "**/node_modules/**",
      "**/dist/**",
      "**/build/**",
      "docs/api/**",
      "bench/results/**",
      "packages/pb/src/proto/**"
    ]
  },
  {
    files: typescriptFiles,
    extends: [tseslint.configs.recommended],
    rules: {
      // `_`-prefixed names are deliberately unused (positional parameters, destructuring rests).
      "@typescript-eslint/no-unused-vars": ["error", {
        argsIgnorePattern: "^_",
        varsIgnorePattern: "^_",
        caughtErrorsIgnorePattern: "^_",
        ignoreRestSiblings: true
      }],
      // Effect's own style: interfaces and `Context.Tag` classes with empty bodies, namespaces for type helpers.
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-namespace": "off",
      // `Array<T>` everywhere, as Effect writes it.
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      // A warning until the three existing findings (pb PbService.ts, pb internal/connection.ts, kv KvStore.test.ts)
      // are fixed by their owners; then an error.
      "@typescript-eslint/consistent-type-imports": ["warn", { fixStyle: "inline-type-imports" }],
      // `Effect.gen(function*() { ... })` bodies cannot be arrow functions, so methods name `this` before them.
      "@typescript-eslint/no-this-alias": "off",
      "no-restricted-syntax": ["error", {
        selector: "CallExpression[callee.property.name='only'][callee.object.name=/^(it|describe|test)$/]",
        message: "no .only in committed tests"
      }, {
        selector: "CallExpression[callee.property.name='skip'][callee.object.name=/^(it|describe|test)$/]",
        message: "no .skip in committed tests"
      }]
    }
  },
  {
    // Library code imports Effect by module (`effect/Effect`), so bundlers keep only what is used.
    files: ["packages/*/src/**/*.ts"],
    rules: {
      // (@effect/eslint-plugin's no-import-from-barrel-package says the same, but it imports @typescript-eslint/utils
      // without declaring it, so it cannot load where npm hoists it: docs/decisions.md.)
      "no-restricted-imports": ["error", {
        paths: ["effect", "@effect/platform", "@effect/cli"].map((name) => ({
          name,
          message: `import the module (e.g. "${name}/Effect"), not the barrel`
        }))
      }],
      "@typescript-eslint/no-explicit-any": "error"
    }
  },
  {
    // Tests and benches talk to untyped JavaScript clients (amqplib callbacks, basho-riak-client).
    files: ["packages/*/test/**/*.ts", "bench/**/*.ts", "examples/**/*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-non-null-assertion": "off"
    }
  },
  {
    files: ["**/*.mjs", "**/*.js", "**/*.cjs"],
    extends: [tseslint.configs.base],
    languageOptions: { globals: { process: "readonly", console: "readonly", Buffer: "readonly" } }
  }
)
