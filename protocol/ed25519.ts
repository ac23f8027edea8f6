/**
 * Ed25519 (SPEC.md §4). The verification rule is ZIP-215: the cofactored
 * equation [8][S]B = [8]R + [8][k]A, with S < L required, and non-canonical
 * encodings of R and A accepted and hashed as given. @noble/curves implements
 * exactly this rule (`zip215: true`).
 *
 * A faster backend may be plugged in as a *fast path*: its "accept" is final
 * only because, for the backends we use (OpenSSL via node:crypto), every
 * accepted signature also satisfies ZIP-215 (cofactorless ⇒ cofactored, and
 * OpenSSL demands S < L and a canonical R). Anything the fast path rejects is
 * decided by the ZIP-215 reference, so every backend gives ZIP-215 verdicts.
 * Small-order and non-canonical member keys are refused at registration
 * (did.ts), so the edge cases cannot be reached by a member's key anyway.
 */
import { ed25519 } from '@noble/curves/ed25519.js'

export interface Ed25519Backend {
  readonly name: string
  /** Never throws: false for malformed input. */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
}

export interface Ed25519Signer {
  readonly name: string
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array
}

/** The reference: ZIP-215 as implemented by @noble/curves. */
export const zip215: Ed25519Backend = {
  name: 'noble-zip215',
  verify(signature, message, publicKey) {
    if (
      !(signature instanceof Uint8Array) ||
      !(message instanceof Uint8Array) ||
      !(publicKey instanceof Uint8Array)
    ) {
      return false
    }
    if (signature.length !== 64 || publicKey.length !== 32) return false
    try {
      return ed25519.verify(signature, message, publicKey, { zip215: true })
    } catch {
      return false
    }
  },
}

/** A backend whose accepts are final and whose rejects fall back to the ZIP-215 reference. */
export function withZip215Fallback(fast: Ed25519Backend): Ed25519Backend {
  return {
    name: `${fast.name}+noble-zip215`,
    verify(signature, message, publicKey) {
      return fast.verify(signature, message, publicKey) || zip215.verify(signature, message, publicKey)
    },
  }
}

export const nobleSigner: Ed25519Signer = {
  name: 'noble',
  sign(message, secretKey) {
    return ed25519.sign(message, secretKey)
  },
}

export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secretKey)
}

/**
 * Why `publicKey` may not be registered as a member key, if it may not: it
 * must be the canonical encoding of a point in the prime-order subgroup
 * (neither of small order nor with a small-order component).
 */
export function keyProblem(
  publicKey: Uint8Array,
): 'did-non-canonical' | 'did-small-order' | 'did-mixed-order' | undefined {
  let point: ReturnType<typeof ed25519.Point.fromBytes>
  try {
    point = ed25519.Point.fromBytes(publicKey, false)
  } catch {
    return 'did-non-canonical'
  }
  if (point.isSmallOrder()) return 'did-small-order'
  // A key with a small-order component (A' + T) is a second identity for the holder of A': refuse it.
  if (!point.isTorsionFree()) return 'did-mixed-order'
  return undefined
}
