import type { Suite } from '../types.js';
import type { AgentClient } from '../../harness/agent/client.js';
import type { Target } from '../../harness/target/target.js';
import { migrationCases, type MigState } from './cases.js';
import { createMtty, fingerprint, mttyInfo, openCdev, removeMtty } from './devices.js';
import { mttyPersonality } from './personality.js';
import { readAll } from './steps.js';
import { State } from './model.js';

const MTTY_TYPE = 'mtty-2';

interface SuiteState extends MigState { uuids: string[] }

/**
 * The migration suite on mtty: two instances of one type (source and destination), reset before
 * use because mtty keeps migration state across close/open, fingerprinted, then every case the
 * model derives from the advertised flags.
 */
export const migrationSuite: Suite<SuiteState> = {
  name: 'migration',
  async setup(target: Target, agent: AgentClient) {
    const created = await createMtty(target, MTTY_TYPE, 2);
    const [a, b] = created as [{ uuid: string; cdev: string }, { uuid: string; cdev: string }];
    const src = await openCdev(agent, a.cdev, `${MTTY_TYPE} ${a.uuid} (source)`);
    const dst = await openCdev(agent, b.cdev, `${MTTY_TYPE} ${b.uuid} (destination)`);
    await src.reset();
    await dst.reset();
    const fp = await fingerprint(agent, src);
    const device = mttyInfo(MTTY_TYPE, a.uuid, fp);
    let stream: Buffer | undefined;
    const state: SuiteState = {
      src, dst, fp, device, personality: mttyPersonality, uuids: created.map((c) => c.uuid),
      async validStream() {
        if (!stream) {
          await dst.reset();
          const fd = await dst.reach(State.STOP_COPY);
          stream = (await readAll(agent, fd)).data;
          await agent.request('close', { fd });
          await dst.reset();
        }
        return stream;
      },
      async reopen(which) {
        const d = which === 'src' ? src : dst;
        const path = which === 'src' ? a.cdev : b.cdev;
        await agent.request('close', { fd: d.fd });
        const fresh = await openCdev(agent, path, d.label);
        d.fd = fresh.fd;
      },
    };
    return { state, cases: migrationCases(fp.migrationFlags, device) };
  },
  async teardown(state, target, agent) {
    await agent.request('close', { fd: state.src.fd });
    await agent.request('close', { fd: state.dst.fd });
    await removeMtty(target, state.uuids);
  },
};
