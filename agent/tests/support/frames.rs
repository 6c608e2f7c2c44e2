//! Frame builders and accessors shared by the peers.

use orchestra_proto::v1::{
    frame, task_event, Frame, OutputAck, OutputItem, OutputKind, TaskAssign, TaskEvent, TaskInput,
    TaskResult, TaskStop,
};

/// A frame carrying `msg`.
pub fn f(msg: frame::Msg) -> Frame {
    Frame { msg: Some(msg) }
}

/// `TaskAssign` for `tool` with `prompt`, first_seq 3 (the gateway's `queued` and `starting`
/// took 1 and 2).
pub fn assign(task_id: &str, tool: &str, prompt: &str) -> TaskAssign {
    TaskAssign {
        task_id: task_id.into(),
        tool: tool.into(),
        prompt: prompt.into(),
        first_seq: 3,
        ..Default::default()
    }
}

/// `OutputAck { seq }`.
pub fn ack(seq: u64) -> Frame {
    f(frame::Msg::Ack(OutputAck { seq }))
}

/// `TaskInput`.
pub fn input(data: &[u8], close: bool) -> Frame {
    f(frame::Msg::Input(TaskInput {
        data: data.to_vec(),
        close,
    }))
}

/// `TaskStop`.
pub fn stop(reason: &str) -> Frame {
    f(frame::Msg::Stop(TaskStop {
        reason: reason.into(),
    }))
}

/// The seq of a numbered frame (`TaskAccepted` or `TaskEvent`).
pub fn seq_of(frame: &Frame) -> Option<u64> {
    match &frame.msg {
        Some(frame::Msg::Accepted(a)) => Some(a.seq),
        Some(frame::Msg::Event(e)) => Some(e.seq),
        _ => None,
    }
}

/// The output item of an event frame.
pub fn item_of(frame: &Frame) -> Option<&OutputItem> {
    match &frame.msg {
        Some(frame::Msg::Event(TaskEvent {
            body: Some(task_event::Body::Output(item)),
            ..
        })) => Some(item),
        _ => None,
    }
}

/// The result of an event frame.
pub fn result_of(frame: &Frame) -> Option<&TaskResult> {
    match &frame.msg {
        Some(frame::Msg::Event(TaskEvent {
            body: Some(task_event::Body::Result(r)),
            ..
        })) => Some(r),
        _ => None,
    }
}

/// An item's kind.
pub fn kind(item: &OutputItem) -> OutputKind {
    OutputKind::try_from(item.kind).unwrap_or(OutputKind::Unspecified)
}

/// What a task sent on its stream, from `TaskAccepted` to its result.
#[derive(Debug, Default)]
pub struct TaskRun {
    /// Every numbered frame, in arrival order.
    pub frames: Vec<Frame>,
}

impl TaskRun {
    /// The output items with their seqs.
    pub fn items(&self) -> Vec<(u64, &OutputItem)> {
        self.frames
            .iter()
            .filter_map(|f| Some((seq_of(f)?, item_of(f)?)))
            .collect()
    }

    /// The texts of the items of `kind`.
    pub fn texts(&self, k: OutputKind) -> Vec<&str> {
        self.items()
            .into_iter()
            .filter(|(_, i)| kind(i) == k)
            .map(|(_, i)| i.text.as_str())
            .collect()
    }

    /// The result.
    pub fn result(&self) -> &TaskResult {
        self.frames
            .iter()
            .find_map(result_of)
            .expect("the task has a result")
    }

    /// The seqs, in arrival order.
    pub fn seqs(&self) -> Vec<u64> {
        self.frames.iter().filter_map(seq_of).collect()
    }
}
