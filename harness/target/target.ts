import type { ClientChannel } from 'ssh2';
import type { ExecOptions, ExecResult } from '../ssh/client.js';
import type { ConsoleFault } from '../../base/results/schema.js';
import type { BoundDevice } from '../devices/manager.js';

/**
 * What the run did about a suite's need for a QEMU on the target (SuiteMachine.rootfs, --qemu):
 * a binary to run there (a lab host's), a Debian rootfs served to the guest (the suite mounts it),
 * or why this run has none. Absent: nothing was arranged; the suite looks for one itself.
 */
export type ClientQemu =
  | { kind: 'binary'; path: string }
  | { kind: 'rootfs'; key: string; qemuVersion: string }
  | { kind: 'none'; reason: string };

/**
 * What a suite sees of the machine under test, whether the harness booted it (QemuGuest) or it is
 * a lab host reached over SSH (LabHost). Suites never learn which, and never start anything.
 */
export interface Target {
  readonly kind: 'qemu' | 'ssh';
  /** profile name (qemu) or host address (ssh) */
  readonly name: string;
  /** environment facts for results: kernel release, accel, profile, qemu version ... */
  readonly facts: Record<string, string>;
  /** the command line that started this machine, when the harness started it (for reproducers) */
  readonly argv?: string[];
  /** where the agent runs on this machine, when not at the image's /usr/bin/vfio-agent (a lab host gets an uploaded copy) */
  readonly agentPath?: string;
  /** real devices bound for the run (a lab host's --device list); empty or absent: suites use their emulated devices */
  readonly devices?: BoundDevice[];
  /** the QEMU a suite may start on this machine as a device's client, as the run provided it */
  readonly clientQemu?: ClientQemu;

  exec(cmd: string, o?: ExecOptions): Promise<ExecResult>;
  upload(data: Buffer, remotePath: string, mode?: number): Promise<void>;
  /** a long-lived command channel (the agent's JSON lines) */
  openChannel(cmd: string): Promise<ClientChannel>;

  /** Write a step marker into the kernel log; faults printed after it are attributed to `step`. */
  mark(step: string): Promise<void>;
  /** a position in the fault stream, and the faults seen since one */
  faultMark(): number;
  faultsSince(mark: number): ConsoleFault[];

  /** false once the machine died (panic, QEMU exit) or the connection could not be restored */
  isAlive(): boolean;
  /** why it died, when it did */
  deathReason(): string | undefined;
  /**
   * What the machine's emulator can tell about a hang (a case that ran out of time): for a QEMU
   * guest, its vCPUs' state from the monitor. Absent, or undefined: nothing beyond the console.
   */
  hangState?(): Promise<string | undefined>;
  close(): Promise<void>;
}
