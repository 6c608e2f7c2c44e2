//! The agent hub: which agents are connected, which task runs where, and every task's events
//! from the agent to the backend and to the browsers (being built; see issue "Agent hub").
