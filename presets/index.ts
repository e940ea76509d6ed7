// The presets by name, for `switchyard start --preset NAME` and `preset:` in a config file.
import type { PresetCatalog } from '../core/index.js';
import { aiGateway } from './ai-gateway.js';
import { balancer } from './balancer.js';
import { confluence } from './confluence.js';
import { tmdb } from './tmdb.js';

export const presets: PresetCatalog = { balancer, 'ai-gateway': aiGateway, tmdb, confluence };
