-- CreateIndex
CREATE INDEX "Note_authorId_updatedAt_idx" ON "Note"("authorId", "updatedAt" DESC);
