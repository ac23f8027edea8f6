/**
 * What a verification found (SPEC.md §12.2): the problems, one per occurrence, and the blocks
 * already named by one, so that a block breaking a rule of a later step (e.g. a record that is
 * both invalid and outside the file's block set) is still one occurrence with one code.
 */
import type { CertificateProblem, CertificateProblemCode } from './format.js'

export class Findings {
  readonly problems: CertificateProblem[] = []
  /** CID keys of blocks a problem already names. */
  readonly blocks = new Set<string>()

  add(code: CertificateProblemCode, message: string, blockKey?: string): void {
    this.problems.push({ code, message })
    if (blockKey !== undefined) this.blocks.add(blockKey)
  }
}
