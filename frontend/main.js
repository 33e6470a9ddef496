// The page's entry point: one TaskStateManager, the custom elements, the router.

import { registerActiveTasks } from './active-tasks.js';
import { registerAnnouncer } from './announcer.js';
import { registerConnectionIndicator } from './connection-indicator.js';
import { setManager } from './context.js';
import { registerDashboardPage } from './dashboard-page.js';
import { registerDependencyGraph } from './dependency-graph.js';
import { registerHistoryPage } from './history-page.js';
import { registerInsightsPage } from './insights-page.js';
import { registerQuestionsPage } from './questions-page.js';
import { registerRecentTasks } from './recent-tasks.js';
import { registerResetButton } from './reset-button.js';
import { Router } from './router.js';
import { registerScheduleForm } from './schedule-form.js';
import { registerSchedulesPage } from './schedules-page.js';
import { registerStartTaskForm } from './start-task-form.js';
import { registerTaskCard } from './task-card.js';
import { registerTaskGroup } from './task-group.js';
import { registerTaskLog } from './task-log.js';
import { registerTaskPage } from './task-page.js';
import { registerTaskQuestions } from './task-questions.js';
import { registerTaskReport } from './task-report.js';
import { TaskStateManager } from './task-state-manager.js';
import { registerTaskTable } from './task-table.js';
import { registerTaskTimeline } from './task-timeline.js';
import { registerTaskTree } from './task-tree.js';
import { registerTaskWorkflow } from './task-workflow.js';
import { registerWorkersPage } from './workers-page.js';

function pollingFrequency() {
  // ?poll=ms overrides; otherwise the manager asks the server (TASK_POLLING_FREQUENCY).
  const value = Number(new URLSearchParams(location.search).get('poll'));
  return Number.isFinite(value) && value >= 100 ? value : undefined;
}

// The API is where the page is served from: `/` for `taskstate serve`, `/jobs/` for an
// application that mounts taskstate at `/jobs` (README: Embedding in your FastAPI app).
const baseUrl = new URL('.', location.href).href;

const taskStateManager = new TaskStateManager({ baseUrl, pollingFrequency: pollingFrequency() });
window.taskStateManager = taskStateManager; // the seed's handle, for the console and tests
setManager(taskStateManager);
taskStateManager.on('connection', ({ state }) => {
  if (state === 'live' && !performance.getEntriesByName('taskstate:live').length) {
    performance.mark('taskstate:live');
  }
});

for (const register of [
  registerTaskCard, registerTaskTable, registerTaskTimeline, registerTaskLog, registerTaskQuestions,
  registerTaskReport, registerActiveTasks, registerRecentTasks, registerStartTaskForm,
  registerConnectionIndicator, registerAnnouncer, registerResetButton, registerDashboardPage,
  registerHistoryPage, registerTaskPage, registerWorkersPage, registerTaskTree, registerTaskGroup,
  registerDependencyGraph, registerTaskWorkflow, registerQuestionsPage, registerScheduleForm,
  registerSchedulesPage, registerInsightsPage,
]) {
  register();
}

new Router(document.getElementById('main')).start();
taskStateManager.initialize();
