/**
 * A set of keys that forgets its oldest past `max` entries. What sync remembers about what peers
 * sent (CIDs declined as invalid, list blocks refused as unnamed, records ignored for an unknown
 * author) grows with what strangers send, for free to them (throwaway keys sign as many records
 * as they like): it must stay bounded. Forgetting costs at most a fetch again.
 */
export class RecentSet {
  readonly #keys = new Set<string>()

  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('max must be a positive integer')
  }

  get size(): number {
    return this.#keys.size
  }

  has(key: string): boolean {
    return this.#keys.has(key)
  }

  /** Adds `key` as the newest (again, if it was there); the oldest goes past `max`. */
  add(key: string): void {
    // Insertion order is age: a key seen again becomes the newest.
    this.#keys.delete(key)
    this.#keys.add(key)
    if (this.#keys.size > this.max) this.#keys.delete(this.#keys.values().next().value!)
  }

  clear(): void {
    this.#keys.clear()
  }
}
