package server

import "net/http"

// HeaderConversationID names the conversation a chat or run response is
// about, so that clients can send it back on the conversation's next
// request and an ingress can route every turn of a conversation to one
// instance (its conversation cache is warm there; docs/operations.md#sticky-sessions).
// agentd itself reads the conversation from the request body, never from
// this header.
const HeaderConversationID = "Agentd-Conversation-Id"

// setConversationID sets HeaderConversationID unless id is empty.
func setConversationID(w http.ResponseWriter, id string) {
	if id != "" {
		w.Header().Set(HeaderConversationID, id)
	}
}
