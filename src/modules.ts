// The capability modules, in start order: a module may `need` what one
// before it `provide`s. Adding a capability is a folder and one line here.
import { accountingModule } from './accounting/module.js';
import { auditModule } from './audit/module.js';
import { analyticsModule } from './analytics/module.js';
import { exposureModule } from './exposure/module.js';
import { performanceModule } from './perf/module.js';
import { responseModule } from './response/module.js';
import { storageModule } from './store/module.js';
import { tracingModule } from './trace/module.js';

export const MODULES = [
  storageModule,
  analyticsModule,
  auditModule,
  tracingModule,
  exposureModule,
  responseModule,
  accountingModule,
  performanceModule,
] as const;
