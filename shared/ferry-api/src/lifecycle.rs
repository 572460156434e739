//! Lifecycle operations shared by the API and the sweeper.

use ferry_aws::Event;
use ferry_domain::id::InstanceId;
use ferry_domain::instance::Instance;
use ferry_domain::task::{TaskEvent, TaskState};
use ferry_store::{CleanupRequest, StoreError, TaskRecord, Versioned};

use crate::{ApiError, ApiResult, AppState};

/// The instance, or 404.
pub async fn load_instance(state: &AppState, id: &InstanceId) -> ApiResult<Versioned<Instance>> {
    state
        .store()
        .get_instance(id)
        .await?
        .ok_or_else(|| ApiError::not_found("instance", id.as_str()))
}

/// The task of an instance, or 404.
pub async fn load_task(state: &AppState, id: &InstanceId) -> ApiResult<Versioned<TaskRecord>> {
    state
        .store()
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task of instance", id.as_str()))
}

/// Applies `event` to a stored task and stores it; returns the event for the bus when the state
/// changed. A transition error or a conflicting write is returned unchanged.
pub async fn transition(
    state: &AppState,
    task: &mut Versioned<TaskRecord>,
    event: &TaskEvent,
) -> ApiResult<Option<Event>> {
    let from = task.value.task.state().clone();
    let mut next = task.value.clone();
    next.task.apply(event)?;
    next.updated_at = state.now();
    let version = state.store().update_task(&next, task.version).await?;
    *task = Versioned {
        value: next,
        version,
    };
    let to = task.value.task.state().clone();
    Ok((from != to).then(|| Event::TaskStateChanged {
        instance: task.value.task.instance_id().clone(),
        from,
        to,
        at: task.value.updated_at,
    }))
}

/// Removes an instance and everything it owns: stops its task, deletes its secrets, asks the
/// workers to remove its topic and its groups' offsets, and deletes its items. Used by delete
/// (pay-as-you-go) and by release (expired subscriptions).
pub async fn remove_instance(state: &AppState, instance: &Instance) -> ApiResult<Vec<Event>> {
    let id = instance.id();
    let mut events = Vec::new();
    let mut generations = 0;
    if let Some(mut task) = state.store().get_task(id).await? {
        generations = task.value.topic_generation;
        if task.value.task.state().wants_worker()
            || matches!(task.value.task.state(), TaskState::Prechecking)
        {
            events.extend(transition(state, &mut task, &TaskEvent::Stop).await?);
        }
        delete_secrets(state, &task.value).await?;
    }
    let groups = state.store().list_groups(id).await?;
    state
        .store()
        .request_cleanup(&CleanupRequest {
            instance_id: id.clone(),
            // Every generation: earlier ones may still wait for their retention.
            topics: (0..=generations).map(|g| state.topic_for(id, g)).collect(),
            groups: groups.iter().map(|g| g.value.id().to_string()).collect(),
            requested_at: state.now(),
            not_before: None,
        })
        .await?;
    match state.store().delete_instance(id).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(events)
}

/// Deletes the secrets a task's configuration refers to.
pub async fn delete_secrets(state: &AppState, task: &TaskRecord) -> ApiResult<()> {
    if let Some(config) = &task.config {
        state
            .secrets()
            .delete(config.source.password_secret())
            .await?;
        if let Some(target) = &config.target {
            state.secrets().delete(target.password_secret()).await?;
        }
    }
    Ok(())
}
